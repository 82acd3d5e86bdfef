//! Moving an installation: every row of a SQLite store copied into an empty PostgreSQL store, in
//! one transaction, so that a daemon on the target carries on where the old one stopped.
//!
//! The two schemas have the same tables and columns (PostgreSQL's own column types); the copy
//! reads the target's types and converts each value, so a column one schema has and the other
//! lacks stops the copy instead of losing data.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{StoreError, StoreOptions};
use crate::clock::SharedClock;

/// The tables copied, parents before children.
const TABLES: [&str; 20] = [
    "workspaces",
    "users",
    "memberships",
    "invitations",
    "password_resets",
    "webhooks",
    "sources",
    "source_traffic",
    "api_tokens",
    "chats",
    "session_history",
    "messages",
    "replies",
    "conversations",
    "webhook_replays",
    "deliveries",
    "attempts",
    "events",
    "outbox",
    "web_sessions",
];

/// Identity columns whose sequences must continue after the copied rows.
const IDENTITIES: [(&str, &str); 9] = [
    ("chats", "id"),
    ("session_history", "id"),
    ("messages", "seq"),
    ("replies", "id"),
    ("conversations", "id"),
    ("deliveries", "seq"),
    ("attempts", "id"),
    ("events", "id"),
    ("outbox", "id"),
];

/// Rows per INSERT statement.
const ROWS_PER_STATEMENT: usize = 500;

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The copy was refused before anything was written (the CLI exits 2).
    #[error("{0}")]
    Refused(String),
    /// A store failed; the target was left as it was (the transaction rolled back).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Store(e.into())
    }
}

/// How many rows of each table were copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

/// A value on its way from SQLite to PostgreSQL, typed by the target's column.
enum Value {
    Bool(Option<bool>),
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// Copies the SQLite store at `from` (which no daemon may hold) into the empty PostgreSQL store
/// `to` (migrated first).
pub async fn copy_store(from: &str, to: &StoreOptions, clock: SharedClock) -> Result<Copied, CopyError> {
    if !from.starts_with("sqlite:") {
        return Err(CopyError::Refused(format!(
            "--from {}: copy-store copies from a sqlite:// store",
            crate::domain::masked_url(from)
        )));
    }
    if !(to.url.starts_with("postgres://") || to.url.starts_with("postgresql://")) {
        return Err(CopyError::Refused(format!(
            "--to {}: copy-store copies into a postgres:// store",
            crate::domain::masked_url(&to.url)
        )));
    }
    let options = SqliteConnectOptions::from_str(from)
        .map_err(|e| CopyError::Refused(format!("--from {from}: {e}")))?;
    if !Path::new(options.get_filename()).is_file() {
        return Err(CopyError::Refused(format!("--from {from}: there is no database there")));
    }
    // Opening takes the daemon's lock (and brings an older file up to the current schema).
    let source = match SqliteStore::open(from, clock.clone()).await {
        Ok(store) => store,
        Err(StoreError::InUse(what)) => {
            return Err(CopyError::Refused(format!(
                "{what} is in use by a running chatbundle daemon: stop it before copying its store"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let target = PgStore::open(&to.url, to.max_connections, clock).await?;
    let result = copy(&source, &target).await;
    super::Lifecycle::close(&source).await;
    super::Lifecycle::close(&target).await;
    result
}

async fn copy(source: &SqliteStore, target: &PgStore) -> Result<Copied, CopyError> {
    let mut tx = target.pool().begin().await?;
    for table in TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        let taken: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *tx).await?;
        if taken {
            return Err(CopyError::Refused(format!(
                "--to: the target already holds {table}; copy-store only fills an empty store"
            )));
        }
    }
    let mut copied = Copied::default();
    for table in TABLES {
        let types: HashMap<String, String> = sqlx::query_as(
            "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let sql = format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid");
        let columns: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(source.readers()).await?;
        let mut typed = Vec::with_capacity(columns.len());
        for column in &columns {
            let Some(kind) = types.get(column) else {
                return Err(CopyError::Refused(format!(
                    "{table}.{column} has no place in the PostgreSQL schema: is this chatbundle older than the file?"
                )));
            };
            typed.push((column.as_str(), kind.as_str()));
        }
        let list = columns.join(", ");
        let sql = format!("SELECT {list} FROM {table} ORDER BY rowid");
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(source.readers());
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(ROWS_PER_STATEMENT);
        let mut count = 0u64;
        while let Some(row) = rows.try_next().await? {
            batch.push(typed.iter().map(|(name, kind)| value(&row, name, kind)).collect::<Result<_, _>>()?);
            if batch.len() == ROWS_PER_STATEMENT {
                count += insert(&mut tx, table, &list, &mut batch).await?;
            }
        }
        count += insert(&mut tx, table, &list, &mut batch).await?;
        copied.tables.push((table, count));
    }
    for (table, column) in IDENTITIES {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE(MAX({column}), 0) + 1, false)
             FROM {table}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    // The old daemon is stopped: what it had in flight is due again, under the same ids. No
    // message may be received behind what was bundled or received there, whatever this
    // database's clock says.
    sqlx::query("UPDATE deliveries SET lease_until = NULL, lease_token = NULL WHERE status = 'pending'")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE workspaces s SET closed_through = GREATEST(
            (SELECT MAX(GREATEST(bundled_before, COALESCE(closing_boundary, 0))) FROM webhooks w
             WHERE w.workspace_id = s.id),
            (SELECT MAX(received_at) + 1 FROM messages m WHERE m.workspace_id = s.id),
            0)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(copied)
}

/// Reads a SQLite value as the target column's type.
fn value(row: &SqliteRow, name: &str, kind: &str) -> Result<Value, CopyError> {
    Ok(match kind {
        "boolean" => Value::Bool(row.try_get::<Option<i64>, _>(name)?.map(|v| v != 0)),
        "bigint" | "integer" | "smallint" => Value::Int(row.try_get(name)?),
        "double precision" | "real" => Value::Float(row.try_get(name)?),
        "bytea" => Value::Bytes(row.try_get(name)?),
        "text" => Value::Text(row.try_get(name)?),
        other => return Err(CopyError::Refused(format!("{name}: no copy rule for PostgreSQL type {other}"))),
    })
}

/// Inserts the rows gathered so far (and empties `batch`); returns how many.
async fn insert(
    tx: &mut sqlx::PgConnection,
    table: &str,
    list: &str,
    batch: &mut Vec<Vec<Value>>,
) -> Result<u64, CopyError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut query = QueryBuilder::<Postgres>::new(format!("INSERT INTO {table} ({list}) "));
    query.push_values(batch.drain(..), |mut row, values| {
        for v in values {
            match v {
                Value::Bool(v) => row.push_bind(v),
                Value::Int(v) => row.push_bind(v),
                Value::Float(v) => row.push_bind(v),
                Value::Text(v) => row.push_bind(v),
                Value::Bytes(v) => row.push_bind(v),
            };
        }
    });
    // Identity columns are given explicitly (they are GENERATED BY DEFAULT): the ids are data,
    // which deliveries, attempts and first messages point at.
    Ok(query.build().execute(&mut *tx).await?.rows_affected())
}
