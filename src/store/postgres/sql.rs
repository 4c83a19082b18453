//! PostgreSQL's side of the shared queries: a client (or transaction) as [`Sql`], its rows as
//! [`Row`], and [`Bound`] values as PostgreSQL parameters of the type each placeholder has
//! (`integer` or `bigint`, `text`, `jsonb`). Text cannot hold NUL here, unlike SQLite's:
//! [`text`] and [`json_clean`] replace it.

use super::lease;
use crate::store::columns::unpack;
use crate::store::model::{Bound, Lease, StoreError};
use crate::store::sql::{Dialect, Each, Row, Sql, Transaction};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::private::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{GenericClient, Statement};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;

/// A client (or transaction) running the shared queries; statements run through
/// [`Sql::execute`] are prepared once per `Pg` (a report's rows go in one after another).
pub struct Pg<'c, C: GenericClient> {
    client: &'c mut C,
    prepared: HashMap<String, Statement>,
}

impl<'c, C: GenericClient> Pg<'c, C> {
    pub fn new(client: &'c mut C) -> Pg<'c, C> {
        Pg {
            client,
            prepared: HashMap::new(),
        }
    }
}

/// The shared statements' `?1`, `?2`… as PostgreSQL's `$1`, `$2`….
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl<C: GenericClient> Sql for Pg<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn each(
        &mut self,
        query: &str,
        params: &[Bound],
        each: &mut Each<'_>,
    ) -> Result<(), StoreError> {
        let mut rows = self.client.query_raw(&placeholders(query), params)?;
        while let Some(row) = rows.next()? {
            each(&row)?;
        }
        Ok(())
    }

    fn execute(&mut self, statement: &str, params: &[Bound]) -> Result<u64, StoreError> {
        let prepared = match self.prepared.get(statement) {
            Some(prepared) => prepared.clone(),
            None => {
                let prepared = self.client.prepare(&placeholders(statement))?;
                self.prepared
                    .insert(statement.to_string(), prepared.clone());
                prepared
            }
        };
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.client.execute(&prepared, &params)?)
    }

    fn execute_once(&mut self, statement: &str, params: &[Bound]) -> Result<u64, StoreError> {
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
            .iter()
            .map(|p| {
                let ty = match p {
                    Bound::Int(_) => Type::INT8,
                    Bound::Json(_) => Type::JSONB,
                    Bound::Text(_) | Bound::Null => Type::TEXT,
                };
                (p as &(dyn ToSql + Sync), ty)
            })
            .collect();
        Ok(self
            .client
            .execute_typed(&placeholders(statement), &typed)?)
    }

    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(PgTx(self.client.transaction()?)))
    }

    fn try_xact_lease(&mut self, job: Lease) -> Result<bool, StoreError> {
        lease::try_xact_lease(self.client, job)
    }
}

struct PgTx<'c>(postgres::Transaction<'c>);

impl Sql for PgTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn each(
        &mut self,
        query: &str,
        params: &[Bound],
        each: &mut Each<'_>,
    ) -> Result<(), StoreError> {
        Pg::new(&mut self.0).each(query, params, each)
    }

    fn execute(&mut self, statement: &str, params: &[Bound]) -> Result<u64, StoreError> {
        Pg::new(&mut self.0).execute(statement, params)
    }

    fn execute_once(&mut self, statement: &str, params: &[Bound]) -> Result<u64, StoreError> {
        Pg::new(&mut self.0).execute_once(statement, params)
    }

    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Err(StoreError::Config("nested transaction".into()))
    }

    fn try_xact_lease(&mut self, job: Lease) -> Result<bool, StoreError> {
        lease::try_xact_lease(&mut self.0, job)
    }
}

impl Transaction for PgTx<'_> {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.commit()?)
    }
}

impl Row for postgres::Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError::Config(format!("column {i} is NULL")))
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        // `integer` columns (attempts, the schema version) and `bigint` ones.
        Ok(match *self.columns()[i].type_() {
            Type::INT4 => self.try_get::<_, Option<i32>>(i)?.map(i64::from),
            Type::INT2 => self.try_get::<_, Option<i16>>(i)?.map(i64::from),
            _ => self.try_get(i)?,
        })
    }

    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn json(&self, i: usize) -> Result<Option<Value>, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn document(&self, i: usize) -> Result<Option<Value>, StoreError> {
        Ok(self.try_get::<_, Option<&[u8]>>(i)?.and_then(unpack))
    }
}

impl ToSql for Bound {
    /// As the placeholder's type asks: an `integer` column gets an `i32`.
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Bound::Null => Ok(IsNull::Yes),
            Bound::Int(n) if *ty == Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
            Bound::Int(n) => n.to_sql(ty, out),
            Bound::Text(t) => text(t).as_ref().to_sql(ty, out),
            Bound::Json(v) => json_clean(v.clone()).to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <i32 as ToSql>::accepts(ty)
            || <&str as ToSql>::accepts(ty)
            || <Value as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// PostgreSQL text cannot hold NUL (SQLite's can): a NUL from a client becomes U+FFFD.
pub(in crate::store) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The same for the strings (and keys) of a JSON document (`jsonb` refuses `\u0000`).
pub(in crate::store) fn json_clean(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{fffd}")),
        Value::Array(items) => Value::Array(items.into_iter().map(json_clean).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (text(&k).into_owned(), json_clean(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_replaced_for_text_and_jsonb() {
        assert_eq!(text("a\0b"), "a\u{fffd}b");
        let v = json_clean(json!({"k\0": ["x\0", 1]}));
        assert_eq!(v, json!({"k\u{fffd}": ["x\u{fffd}", 1]}));
    }

    #[test]
    fn placeholders_are_numbered_with_dollars() {
        assert_eq!(
            placeholders("a = ?1 AND b = lower(?12) OR c = '?'"),
            "a = $1 AND b = lower($12) OR c = '?'"
        );
    }
}
