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

use crate::clock::{self, Rebased};
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
    Migration {
        version: 4,
        description: "logical transaction ids: a global order that survives moving the cluster",
        sql: include_str!("../migrations/0004_logical_transaction_ids.sql"),
    },
    Migration {
        version: 5,
        description: "planner statistics: analyze events and streams after 1 % of changes",
        sql: include_str!("../migrations/0005_planner_statistics.sql"),
    },
    Migration {
        version: 6,
        description: "decisions across streams: event tags, the tag index, append_streams()",
        sql: include_str!("../migrations/0006_decisions.sql"),
    },
    Migration {
        version: 7,
        description: "retiring streams (archive, delete), subject keys for crypto-shredding",
        sql: include_str!("../migrations/0007_retire_and_shred.sql"),
    },
    Migration {
        version: 8,
        description: "deadlines of process managers",
        sql: include_str!("../migrations/0008_deadlines.sql"),
    },
    Migration {
        version: 9,
        description: "the archived-stream guard as a trigger with a WHEN condition",
        sql: include_str!("../migrations/0009_archived_trigger_when.sql"),
    },
    Migration {
        version: 10,
        description: "the tracing ids of new events in columns of their own",
        sql: include_str!("../migrations/0010_tracing_id_columns.sql"),
    },
];

/// The schema version this library creates and understands.
pub const SCHEMA_VERSION: i64 = 10;

/// What one run of [`migrate`] did besides applying migrations.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    /// The order was re-based onto this cluster (the store had moved).
    pub(crate) rebased: Option<Rebased>,
    /// The store's tables had no planner statistics and were analyzed.
    pub(crate) analyzed: bool,
}

/// Creates `schema` if needed, applies the migrations it lacks, re-bases the transaction order
/// if the store was moved from another cluster (see `clock::rebase_if_moved`), and analyzes
/// the tables if they hold events but no statistics (a restore brings none).
pub(crate) async fn migrate(
    pool: &PgPool,
    schema: &SchemaName,
    statements: &Statements,
) -> Result<Outcome, PostgresError> {
    let failed = |what: &str| {
        let context = format!("migrating schema `{schema}`: {what}");
        move |source| PostgresError::database(context, source)
    };

    let mut tx = crate::begin::begin(pool).await.map_err(failed("begin"))?;
    // The re-base must see every append committed while it waited for its lock: a snapshot
    // per statement, whatever the server's default.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *tx)
        .await
        .map_err(failed("setting the isolation level"))?;
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
    let rebased = clock::rebase_if_moved(&mut tx, statements, schema).await?;
    tx.commit().await.map_err(failed("commit"))?;
    let analyzed = clock::analyze_if_needed(pool, statements, schema).await?;
    Ok(Outcome { rebased, analyzed })
}

#[cfg(test)]
mod tests {
    use super::{MIGRATIONS, SCHEMA_VERSION};

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        assert_eq!(MIGRATIONS.first().map(|m| m.version), Some(1));
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
