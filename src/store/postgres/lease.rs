//! The fleet-wide leases: PostgreSQL advisory locks, so that one host of the fleet at a time
//! sends the reports or prunes, and a host that dies gives its lease up with its connection.

use crate::store::model::{Lease, StoreError};
use postgres::GenericClient;

/// The advisory lock key of each lease (arbitrary, fixed: "am" and a number).
fn key(job: Lease) -> i64 {
    match job {
        Lease::Reports => 0x616d_0001,
        Lease::Retention => 0x616d_0002,
    }
}

/// `pg_try_advisory_lock`: held by the session until released or disconnected.
pub(super) fn try_lease(client: &mut impl GenericClient, job: Lease) -> Result<bool, StoreError> {
    Ok(client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key(job)])?
        .get(0))
}

pub(super) fn release(client: &mut impl GenericClient, job: Lease) -> Result<(), StoreError> {
    client.execute("SELECT pg_advisory_unlock($1)", &[&key(job)])?;
    Ok(())
}

/// `pg_try_advisory_xact_lock`: held until the transaction ends.
pub(super) fn try_xact_lease(
    client: &mut impl GenericClient,
    job: Lease,
) -> Result<bool, StoreError> {
    Ok(client
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key(job)])?
        .get(0))
}
