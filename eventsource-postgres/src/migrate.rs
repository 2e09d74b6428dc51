//! The embedded schema migrations and their runner.
//!
//! Why not `sqlx::migrate!`: its bookkeeping table `_sqlx_migrations` lives wherever the
//! connection's `search_path` points, which for a store in a configurable schema means either
//! one table shared by every schema of the database (so a second store would find "its"
//! migrations already applied) or a `search_path` dance on every pooled connection. This runner
//! is small: ordered SQL files embedded with `include_str!`, a `schema_migrations` table inside
//! the store's own schema, one transaction (PostgreSQL DDL is transactional, so a failed
//! migration leaves nothing behind), and an advisory lock so that processes starting together
//! migrate one after the other.

use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::error::PostgresError;
use crate::schema::SchemaName;
use crate::sql::{self, MIGRATION_LOCK, Statements};

/// One embedded migration. `__SCHEMA__` in its SQL stands for the quoted schema name and
/// `__CHANNEL__` for the NOTIFY channel (see `sql::migration`).
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// In version order; never edit a released migration, add one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "event store: streams, events, snapshots, checkpoints, append()",
        sql: include_str!("../migrations/0001_event_store.sql"),
    },
    Migration {
        version: 2,
        description: "projection control: registered filters, reset requests",
        sql: include_str!("../migrations/0002_projection_control.sql"),
    },
    Migration {
        version: 3,
        description: "parked events (projection dead letters)",
        sql: include_str!("../migrations/0003_parked_events.sql"),
    },
];

/// The schema version this library creates and understands.
pub const SCHEMA_VERSION: i64 = 3;

/// Creates `schema` if needed and applies the migrations it lacks.
pub(crate) async fn migrate(
    pool: &PgPool,
    schema: &SchemaName,
    statements: &Statements,
) -> Result<(), PostgresError> {
    let failed = |what: &str| {
        let context = format!("migrating schema `{schema}`: {what}");
        move |source| PostgresError::database(context, source)
    };

    let mut tx = pool.begin().await.map_err(failed("begin"))?;
    sqlx::query(MIGRATION_LOCK)
        .bind(schema.as_str())
        .execute(&mut *tx)
        .await
        .map_err(failed("taking the migration lock"))?;
    // Several statements: only the simple protocol runs them (and prepares nothing).
    sqlx::raw_sql(AssertSqlSafe(statements.create_schema.text()))
        .execute(&mut *tx)
        .await
        .map_err(failed("creating the schema"))?;

    let applied: Option<i64> = statements
        .schema_version
        .query()
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed("reading the schema version"))?;
    let applied = applied.unwrap_or(0);
    if applied > SCHEMA_VERSION {
        return Err(PostgresError::SchemaTooNew {
            schema: schema.to_string(),
            found: applied,
            supported: SCHEMA_VERSION,
        });
    }

    for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
        let failed = |source| PostgresError::Migration {
            schema: schema.to_string(),
            version: migration.version,
            source,
        };
        sqlx::raw_sql(AssertSqlSafe(sql::migration(migration.sql, schema)))
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        statements
            .record_migration
            .query()
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
    }
    tx.commit().await.map_err(failed("commit"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MIGRATIONS, SCHEMA_VERSION};

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i64 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
