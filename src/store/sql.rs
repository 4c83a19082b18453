//! SQL written once for both back ends: the [`Sql`] trait that a SQLite connection and a
//! PostgreSQL client (or a transaction of either) implement, the [`Row`] trait over their
//! rows, and the [`Dialect`]: the fragments where the two differ, each in one place.
//!
//! Why a trait and not a query builder (sea-query): the two dialects differ in placeholders,
//! JSON access, collation and how a row's columns are read, and only the first of these is a
//! builder's business. The row mapping, the larger part of every operation, would still be
//! written twice, and the builder would add a dependency for what `bind` does in twenty lines.
//!
//! Statements are written with SQLite's numbered placeholders `?1`, `?2`…; the PostgreSQL
//! side turns them into `$1`, `$2`… (no statement here uses `?` otherwise).

use super::model::{Bound, Lease, StoreError};
use serde_json::Value;

/// Which dialect a connection speaks, and the fragments where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// What makes a scan of a time window read the window's covering index: SQLite's
    /// planner otherwise prefers an index that saves the GROUP BY's sort (`from_domain`'s
    /// for `/v1/stats?group_by=from_domain&since=1h`) and walks every row of the table.
    pub fn window_index(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INDEXED BY verdicts_window",
            Dialect::Postgres => "",
        }
    }

    /// A verdict's recipient count: SQLite rows from before schema 2 have none, and count
    /// their list.
    pub fn rcpt_count(self) -> &'static str {
        match self {
            Dialect::Sqlite => "COALESCE(rcpt_count, json_array_length(rcpts))",
            Dialect::Postgres => "rcpt_count",
        }
    }

    /// `expr` for ORDER BY, compared byte by byte (SQLite's default BINARY collation;
    /// PostgreSQL's database collation would sort by language rules otherwise).
    pub fn bytewise(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => expr.to_string(),
            Dialect::Postgres => format!("{expr} COLLATE \"C\""),
        }
    }

    /// The column that keeps report rows in the order they were stored.
    pub fn report_row_order(self) -> &'static str {
        match self {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "id",
        }
    }
}

/// One row of a result, read by column index the same way on both back ends.
pub trait Row {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    /// A JSON column (text in SQLite, `jsonb` in PostgreSQL); `None` when NULL or not JSON.
    fn json(&self, i: usize) -> Result<Option<Value>, StoreError>;
    /// A verdict's stored document (see `store/columns.rs`): text or BLOB in SQLite,
    /// `bytea` in PostgreSQL; `None` when NULL or unreadable.
    fn document(&self, i: usize) -> Result<Option<Value>, StoreError>;
}

/// What a row handler returns.
pub type Each<'f> = dyn FnMut(&dyn Row) -> Result<(), StoreError> + 'f;

/// A connection or a transaction of either back end.
pub trait Sql {
    fn dialect(&self) -> Dialect;

    /// Runs `query`, handing each row to `each` as it arrives (nothing is held in memory).
    fn each(
        &mut self,
        query: &str,
        params: &[Bound],
        each: &mut Each<'_>,
    ) -> Result<(), StoreError>;

    /// Runs a statement (prepared once per connection or transaction); returns how many
    /// rows it changed.
    fn execute(&mut self, statement: &str, params: &[Bound]) -> Result<u64, StoreError>;

    /// Runs a statement that is not run again on this connection soon (its text changes
    /// with its rows): on PostgreSQL in one round trip, unprepared, its parameters typed by
    /// their values; on SQLite as [`Sql::execute`].
    fn execute_once(&mut self, statement: &str, params: &[Bound]) -> Result<u64, StoreError> {
        self.execute(statement, params)
    }

    /// Begins a transaction, rolled back when dropped without [`Transaction::commit`].
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError>;

    /// Takes the fleet-wide lease for `job` until the transaction ends, if no other host
    /// holds it (one SQLite file has one host: always granted).
    fn try_xact_lease(&mut self, job: Lease) -> Result<bool, StoreError>;
}

/// A transaction in progress.
pub trait Transaction: Sql {
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

impl dyn Sql + '_ {
    /// Every row of `query`, mapped.
    pub fn rows<T>(
        &mut self,
        query: &str,
        params: &[Bound],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(query, params, &mut |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of `query`, mapped, if there is one.
    pub fn first<T>(
        &mut self,
        query: &str,
        params: &[Bound],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut out = None;
        self.each(query, params, &mut |row| {
            if out.is_none() {
                out = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// `WHERE a AND b …` of a filter's conditions (each a fragment where `?` marks the value,
/// or which the value follows), with numbered placeholders, and the values to bind.
pub fn bind(conditions: Vec<(&str, Bound)>) -> (String, Vec<Bound>) {
    let mut args = Vec::new();
    let mut conds = Vec::new();
    for (cond, value) in conditions {
        args.push(value);
        let mark = format!("?{}", args.len());
        conds.push(if cond.contains('?') {
            cond.replace('?', &mark)
        } else {
            format!("{cond} {mark}")
        });
    }
    let clause = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    (clause, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_get_numbered_placeholders() {
        let (clause, args) = bind(vec![
            ("received_at >=", Bound::Int(5)),
            ("(lower(a) = lower(?) OR lower(b) = lower(?))", "x".into()),
        ]);
        assert_eq!(
            clause,
            "WHERE received_at >= ?1 AND (lower(a) = lower(?2) OR lower(b) = lower(?2))"
        );
        assert_eq!(args, vec![Bound::Int(5), Bound::Text("x".into())]);
        assert_eq!(bind(Vec::new()).0, "");
    }
}
