//! SQLite's side of the shared queries: a connection (or transaction) as [`Sql`], its rows
//! as [`Row`], and [`Bound`] values as SQLite parameters (JSON as text).

use crate::store::columns::unpack;
use crate::store::model::{Bound, Lease, StoreError};
use crate::store::sql::{Dialect, Each, Row, Sql, Transaction};
use rusqlite::types::{Null, ToSqlOutput};
use rusqlite::{params_from_iter, Connection};
use serde_json::Value;

/// A SQLite connection running the shared queries.
pub struct Lite<'c>(pub &'c Connection);

impl Sql for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn each(
        &mut self,
        query: &str,
        params: &[Bound],
        each: &mut Each<'_>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(query)?;
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            each(row)?;
        }
        Ok(())
    }

    fn execute(&mut self, statement: &str, params: &[Bound]) -> Result<u64, StoreError> {
        let mut stmt = self.0.prepare_cached(statement)?;
        Ok(stmt.execute(params_from_iter(params))? as u64)
    }

    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        // `unchecked`: through a shared reference; the shared queries never nest them.
        Ok(Box::new(LiteTx(self.0.unchecked_transaction()?)))
    }

    fn try_xact_lease(&mut self, _job: Lease) -> Result<bool, StoreError> {
        Ok(true)
    }
}

struct LiteTx<'c>(rusqlite::Transaction<'c>);

impl Sql for LiteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn each(
        &mut self,
        query: &str,
        params: &[Bound],
        each: &mut Each<'_>,
    ) -> Result<(), StoreError> {
        Lite(&self.0).each(query, params, each)
    }

    fn execute(&mut self, statement: &str, params: &[Bound]) -> Result<u64, StoreError> {
        Lite(&self.0).execute(statement, params)
    }

    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Err(StoreError::Config("nested transaction".into()))
    }

    fn try_xact_lease(&mut self, _job: Lease) -> Result<bool, StoreError> {
        Ok(true)
    }
}

impl Transaction for LiteTx<'_> {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.commit()?)
    }
}

impl Row for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }

    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }

    fn json(&self, i: usize) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = self.get(i)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn document(&self, i: usize) -> Result<Option<Value>, StoreError> {
        use rusqlite::types::ValueRef;
        Ok(match self.get_ref(i)? {
            ValueRef::Text(b) | ValueRef::Blob(b) => unpack(b),
            _ => None,
        })
    }
}

impl rusqlite::ToSql for Bound {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Bound::Null => ToSqlOutput::from(Null),
            Bound::Int(n) => ToSqlOutput::from(*n),
            Bound::Text(t) => ToSqlOutput::from(t.as_str()),
            Bound::Json(v) => ToSqlOutput::from(v.to_string()),
        })
    }
}
