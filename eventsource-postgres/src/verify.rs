//! The integrity checks of [`PostgresAdmin::verify`], each finding located by stream, version,
//! position or projection.

use eventsource_core::Metadata;
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::admin::PostgresAdmin;
use crate::error::{PostgresError, excerpt};
use crate::migrate::SCHEMA_VERSION;
use crate::row::{transaction_id, value};
use crate::sql::{EVENT_TRIGGERS, Statement};

mod report;
pub use report::{Check, Finding, ScanProgress, Severity, VerifyReport};

/// Rows scanned per query (streamed: the client checks rows while the server sends the rest).
const PAGE: i64 = 10_000;

/// Above this many rows, a table the planner has no statistics on is worth a warning.
const UNANALYSED_WARNING_ROWS: i64 = 10_000;

/// The triggers that keep events immutable.
const TRIGGERS: [&str; 2] = ["events_immutable", "events_no_truncate"];

impl PostgresAdmin {
    /// Checks the store's integrity: the schema version is the one this library knows; the
    /// immutability triggers exist and fire; each stream's versions run 1, 2, 3... without
    /// gaps or repeats and its head row equals its last version; every head has events;
    /// positions and event ids are unique; metadata is an object the store can decode; names
    /// and schema versions are sane; no checkpoint is past the head of the log; no transaction
    /// id is beyond the cluster's (a store restored into another cluster and not migrated
    /// since, see [`PostgresError::ClusterMoved`]). A payload that is not a JSON object is a
    /// warning.
    ///
    /// Reads every event once, in pages. Fails only when the schema holds no event store
    /// ([`PostgresError::SchemaMissing`], [`PostgresError::NotMigrated`]) or a query fails;
    /// what is wrong with the data is in the report.
    pub async fn verify(&self) -> Result<VerifyReport, PostgresError> {
        self.verify_with_progress(|_| {}).await
    }

    /// [`verify`](Self::verify), calling `progress` after each page of events scanned.
    pub async fn verify_with_progress(
        &self,
        mut progress: impl FnMut(ScanProgress) + Send,
    ) -> Result<VerifyReport, PostgresError> {
        let status = self.schema_status().await?;
        status.require_tables(self.store().schema().as_str())?;
        let schema_version = status.version.unwrap_or(0);
        let mut report = VerifyReport {
            schema_version,
            ..VerifyReport::default()
        };
        if schema_version > SCHEMA_VERSION {
            report.add(Finding::problem(
                Check::SchemaVersion,
                format!(
                    "schema version {schema_version} is newer than this release knows ({SCHEMA_VERSION}): upgrade"
                ),
            ));
        } else if schema_version < SCHEMA_VERSION {
            report.add(Finding::problem(
                Check::SchemaVersion,
                format!("schema version {schema_version} is older than {SCHEMA_VERSION}: migrate"),
            ));
        }
        self.check_triggers(&mut report).await?;
        self.scan_streams(&mut report, &mut progress).await?;
        self.check_heads_without_events(&mut report).await?;
        self.check_unique(&mut report).await?;
        self.check_checkpoints(&mut report).await?;
        self.check_snapshots(&mut report).await?;
        self.check_transaction_ids(&mut report).await?;
        self.check_statistics(&mut report).await?;
        Ok(report)
    }

    /// The immutability triggers exist and fire (enabled `O`rigin or `A`lways).
    async fn check_triggers(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let schema = self.store().schema();
        let query = sqlx::query(EVENT_TRIGGERS).bind(schema.as_str());
        let rows = self.rows(query, "the triggers of `events`").await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = value(row, "name", "a trigger")?;
            let enabled: String = value(row, "enabled", "a trigger")?;
            found.push((name, enabled));
        }
        for trigger in TRIGGERS {
            match found.iter().find(|(name, _)| name == trigger) {
                None => report.add(Finding::problem(
                    Check::Immutability,
                    format!(
                        "trigger `{trigger}` on `events` is missing: events can be changed or removed"
                    ),
                )),
                Some((_, enabled)) if enabled != "O" && enabled != "A" => {
                    let state = if enabled == "D" {
                        "disabled"
                    } else {
                        "enabled for replicas only"
                    };
                    report.add(Finding::problem(
                        Check::Immutability,
                        format!(
                            "trigger `{trigger}` on `events` is {state}: run `ALTER TABLE {schema}.events ENABLE TRIGGER {trigger}`"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Every event in (stream, version) order: versions, heads, metadata, payloads, names.
    async fn scan_streams(
        &self,
        report: &mut VerifyReport,
        progress: &mut (impl FnMut(ScanProgress) + Send),
    ) -> Result<(), PostgresError> {
        let total = self.counts().await?.events;
        let page = &self.store().sql().scan_page;
        // The pages are read in one read-only transaction whose planner may not sort, hash or
        // read a bitmap: with statistics older than the streams at the cursor (keys beyond the
        // histogram look rare), a page was planned as a bitmap scan of the rest of the table
        // plus a sort, 2–3 s per page at 2M events instead of 15 ms (issue 22). The ordered
        // index scans and the merge join are then the only plans left.
        let what = "a page of events";
        let mut tx = crate::begin::begin(self.store().pool())
            .await
            .map_err(self.failed(what))?;
        sqlx::raw_sql(
            "SET TRANSACTION READ ONLY; SET LOCAL enable_sort = off; \
             SET LOCAL enable_bitmapscan = off; SET LOCAL enable_hashjoin = off",
        )
        .execute(&mut *tx)
        .await
        .map_err(self.failed(what))?;
        let mut cursor = (String::new(), i64::MIN);
        let mut open: Option<OpenStream> = None;
        let mut scanned = 0u64;
        loop {
            let query = page.query().bind(&cursor.0).bind(cursor.1).bind(PAGE);
            let mut rows = query.fetch(&mut *tx);
            let mut in_page = 0i64;
            while let Some(row) = rows.try_next().await.map_err(self.failed(what))? {
                in_page += 1;
                let event = ScannedEvent::read(&row)?;
                report.events += 1;
                let previous = match open.as_mut() {
                    Some(current) if current.id == event.stream => current.last_version,
                    _ => {
                        if let Some(done) = open.take() {
                            done.close(report);
                        }
                        report.streams += 1;
                        open = Some(OpenStream {
                            id: event.stream.to_owned(),
                            last_version: 0,
                            last_position: 0,
                            head: event.head,
                        });
                        0
                    }
                };
                event.check(previous, report);
                if let Some(current) = open.as_mut() {
                    current.last_version = event.version;
                    current.last_position = event.position;
                }
            }
            drop(rows);
            if let Some(current) = &open {
                cursor = (current.id.clone(), current.last_version);
            }
            scanned += in_page as u64;
            progress(ScanProgress {
                scanned,
                total: total.max(scanned),
            });
            if in_page < PAGE {
                break;
            }
        }
        tx.rollback().await.map_err(self.failed(what))?;
        if let Some(done) = open {
            done.close(report);
        }
        Ok(())
    }

    /// The first rows of a statement listing problems (at most as many as a report keeps),
    /// counting those left out as problems of `report`.
    async fn first_rows(
        &self,
        statement: &Statement,
        what: &str,
        report: &mut VerifyReport,
    ) -> Result<Vec<PgRow>, PostgresError> {
        let limit = VerifyReport::MAX_FINDINGS as i64;
        let rows = self.rows(statement.query().bind(limit), what).await?;
        if let Some(first) = rows.first() {
            let total: i64 = value(first, "total", what)?;
            report.left_out(u64::try_from(total - rows.len() as i64).unwrap_or(0));
        }
        Ok(rows)
    }

    /// A head row in `streams` with no events behind it.
    async fn check_heads_without_events(
        &self,
        report: &mut VerifyReport,
    ) -> Result<(), PostgresError> {
        let statement = &self.sql().heads_without_events;
        let what = "stream heads without events";
        for row in self.first_rows(statement, what, report).await? {
            let stream: String = value(&row, "stream_id", "a stream head")?;
            let version: i64 = value(&row, "version", "a stream head")?;
            report.add(
                Finding::problem(
                    Check::StreamHead,
                    format!("`streams` says version {version}, but the stream has no events"),
                )
                .at(&stream, Some(version), None),
            );
        }
        Ok(())
    }

    /// Positions and event ids are unique (constraints guarantee it unless someone dropped
    /// them).
    async fn check_unique(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let admin = self.sql();
        // A valid unique index on the column is PostgreSQL's guarantee: no scan needed (each
        // scan reads the whole log, 1.4 s at 2M events). Without one, the scan looks.
        let what = "the unique indexes of `events`";
        let schema = self.store().schema().as_str();
        let row = self
            .row(admin.unique_guarantees.query().bind(schema), what)
            .await?;
        let positions_guaranteed: bool = value(&row, "positions", what)?;
        let ids_guaranteed: bool = value(&row, "event_ids", what)?;
        let what = "repeated positions";
        let rows = if positions_guaranteed {
            Vec::new()
        } else {
            self.first_rows(&admin.repeated_positions, what, report)
                .await?
        };
        for row in rows {
            let (position, count, holders) = repeated::<i64>(&row, what)?;
            let mut finding = Finding::problem(
                Check::Positions,
                format!(
                    "position {position} is held by {count} events: {}",
                    excerpt(&holders)
                ),
            );
            finding.position = Some(position);
            report.add(finding);
        }
        let what = "repeated event ids";
        let rows = if ids_guaranteed {
            Vec::new()
        } else {
            self.first_rows(&admin.repeated_event_ids, what, report)
                .await?
        };
        for row in rows {
            let (id, count, holders) = repeated::<String>(&row, what)?;
            report.add(Finding::problem(
                Check::EventIds,
                format!(
                    "event id {id} is stored {count} times: {}",
                    excerpt(&holders)
                ),
            ));
        }
        Ok(())
    }

    /// No checkpoint points past the head of the log (e.g. after restoring an older backup).
    async fn check_checkpoints(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let query = self.sql().checkpoints_and_head.query();
        for row in self.rows(query, "the checkpoints").await? {
            report.checkpoints += 1;
            let projection: String = value(&row, "projection", "a checkpoint")?;
            let position: i64 = value(&row, "position", "a checkpoint")?;
            let head: i64 = value(&row, "head", "a checkpoint")?;
            if position > head {
                let mut finding = Finding::problem(
                    Check::Checkpoints,
                    format!(
                        "checkpoint at position {position} is past the head of the log ({head}): was the store restored from an older backup? Reset the checkpoint to rebuild the projection"
                    ),
                );
                finding.projection = Some(projection);
                finding.position = Some(position);
                report.add(finding);
            }
        }
        Ok(())
    }

    /// No snapshot is past its stream's head: loads ignore such a snapshot (and refold), but the
    /// stream once had the events the snapshot covers.
    async fn check_snapshots(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let limit = i64::try_from(VerifyReport::MAX_FINDINGS).unwrap_or(i64::MAX);
        let query = self.sql().snapshots_ahead.query().bind(limit);
        for row in self.rows(query, "the snapshots").await? {
            let stream: String = value(&row, "stream_id", "a snapshot")?;
            let version: i64 = value(&row, "version", "a snapshot")?;
            let head: i64 = value(&row, "head", "a snapshot")?;
            let mut finding = Finding::problem(
                Check::Snapshots,
                format!(
                    "snapshot at version {version} is past the stream's head ({head}): loads ignore it and refold the stream, but events it covers are missing (snapshots restored from a newer backup than the events?)"
                ),
            );
            finding.stream = Some(stream);
            finding.version = Some(version);
            report.add(finding);
        }
        Ok(())
    }

    /// No stored (logical) transaction id is at or beyond the cluster's next one: such events
    /// come from another cluster, and the store refuses to work until `migrate` re-bases it.
    /// Also a checkpoint beyond the cluster and every event, and a missing offset row.
    async fn check_transaction_ids(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let what = "the newest transaction ids";
        let row = self.row(self.sql().transaction_ids.query(), what).await?;
        let schema = self.store().schema();
        let next: Option<i64> = value(&row, "next", what)?;
        let Some(next) = next else {
            report.add(Finding::problem(
                Check::TransactionIds,
                format!(
                    "the row of table `transaction_offset` is missing, so the store cannot order new events: run `eventsource migrate --schema {schema}` to put it back"
                ),
            ));
            return Ok(());
        };
        let next = transaction_id(next, what)?;
        let newest: Option<i64> = value(&row, "events", what)?;
        let newest = newest.map(|n| transaction_id(n, what)).transpose()?;
        if let Some(newest) = newest
            && newest >= next
        {
            report.add(Finding::problem(
                Check::TransactionIds,
                format!(
                    "an event was written by transaction {newest}, but this cluster's next transaction is {next}: the store was restored or moved from another cluster, so global reads hide events and sort new ones before old ones; run `eventsource migrate --schema {schema}` to re-base the order"
                ),
            ));
        }
        // A checkpoint beyond the cluster and every event (written by hand, or with a
        // checkpoint from elsewhere; one among the events is re-based with them): its
        // projection skips what comes before it.
        let checkpoint: Option<i64> = value(&row, "checkpoints", what)?;
        if let Some(checkpoint) = checkpoint.map(|c| transaction_id(c, what)).transpose()?
            && checkpoint > next
            && newest.is_none_or(|newest| checkpoint > newest)
        {
            report.add(Finding::problem(
                Check::TransactionIds,
                format!(
                    "a checkpoint is at transaction {checkpoint}, beyond this cluster's next transaction {next}: its projection skips events until the cluster gets there; reset that checkpoint (`eventsource projection reset`) to rebuild the projection"
                ),
            ));
        }
        Ok(())
    }
}

impl PostgresAdmin {
    /// A warning for each of the store's big tables the planner has no statistics on (never
    /// analysed, by hand or by autovacuum): as after a restore or a bulk import. The store's
    /// reads keep their plans regardless (issue 22), but `status`'s counts are guesses and
    /// ad-hoc queries may plan badly until it is analysed.
    async fn check_statistics(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let what = "the planner statistics of the store's tables";
        let schema = self.store().schema();
        let query = self
            .sql()
            .never_analysed
            .query()
            .bind(schema.as_str())
            .bind(UNANALYSED_WARNING_ROWS);
        for row in self.rows(query, what).await? {
            let table: String = value(&row, "table_name", what)?;
            let rows: i64 = value(&row, "live_rows", what)?;
            report.add(Finding::new(
                Severity::Warning,
                Check::Statistics,
                format!(
                    "table `{table}` (about {rows} rows) has never been analysed: the planner's estimates and `status`'s counts are guesses until autovacuum analyses it; run `ANALYZE {schema}.{table}` (or `eventsource migrate`, which analyses a store that needs it)"
                ),
            ));
        }
        Ok(())
    }
}

/// A row of `repeated_positions` or `repeated_event_ids`: what is repeated, how often, and
/// (a few of) the events holding it.
fn repeated<K>(row: &PgRow, what: &str) -> Result<(K, i64, String), PostgresError>
where
    K: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    Ok((
        value(row, 0, what)?,
        value(row, 1, what)?,
        value(row, 2, what)?,
    ))
}

/// One row of the scan, with what the checks look at, borrowed from the row.
struct ScannedEvent<'r> {
    stream: &'r str,
    version: i64,
    position: i64,
    name: &'r str,
    schema_version: i64,
    payload_type: &'r str,
    /// The metadata's JSON text, `None` when it is `{}` (which decodes).
    metadata: Option<&'r str>,
    metadata_type: &'r str,
    head: Option<i64>,
}

impl<'r> ScannedEvent<'r> {
    fn read(row: &'r PgRow) -> Result<Self, PostgresError> {
        fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, PostgresError>
        where
            T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        {
            row.try_get(column)
                .map_err(|source| PostgresError::database("reading an event row", source))
        }
        Ok(ScannedEvent {
            stream: get(row, "stream_id")?,
            version: get(row, "version")?,
            position: get(row, "position")?,
            name: get(row, "name")?,
            schema_version: get(row, "schema_version")?,
            payload_type: get(row, "payload_type")?,
            metadata: get(row, "metadata")?,
            metadata_type: get(row, "metadata_type")?,
            head: get(row, "head")?,
        })
    }

    /// The checks of one event, `previous` being the version before it in its stream (0 for
    /// the first).
    fn check(&self, previous: i64, report: &mut VerifyReport) {
        let at =
            |finding: Finding| finding.at(self.stream, Some(self.version), Some(self.position));
        let (version, name) = (self.version, excerpt(self.name));
        if version == previous {
            report.add(at(Finding::problem(
                Check::StreamVersions,
                format!("version {version} is stored more than once"),
            )));
        } else if version != previous.saturating_add(1) {
            let missing = if version == previous.saturating_add(2) {
                format!("version {} is missing", previous.saturating_add(1))
            } else {
                format!(
                    "versions {} to {} are missing",
                    previous.saturating_add(1),
                    version.saturating_sub(1)
                )
            };
            report.add(at(Finding::problem(
                Check::StreamVersions,
                format!("{missing} (gap before version {version})"),
            )));
        }
        if self.name.trim().is_empty() {
            report.add(at(Finding::problem(
                Check::EventName,
                "the event name is empty",
            )));
        }
        if self.schema_version < 1 || self.schema_version > i64::from(u32::MAX) {
            report.add(at(Finding::problem(
                Check::SchemaVersion,
                format!(
                    "event `{name}` has schema version {}, outside 1..=4294967295",
                    self.schema_version
                ),
            )));
        }
        if self.payload_type != "object" {
            report.add(at(Finding::new(
                Severity::Warning,
                Check::Payload,
                format!(
                    "the payload of `{name}` is a JSON {}, not an object",
                    self.payload_type
                ),
            )));
        }
        if self.metadata_type != "object" {
            report.add(at(Finding::problem(
                Check::Metadata,
                format!(
                    "the metadata of `{name}` is {}, not a JSON object",
                    kind(self.metadata_type)
                ),
            )));
        } else if let Some(text) = self.metadata
            && let Err(e) = serde_json::from_str::<Metadata>(text)
        {
            report.add(at(Finding::problem(
                Check::Metadata,
                format!("the metadata of `{name}` does not decode: {e}"),
            )));
        }
    }
}

/// A JSON type as `jsonb_typeof` names it, as a phrase.
fn kind(json_type: &str) -> &'static str {
    match json_type {
        "null" => "null",
        "boolean" => "a boolean",
        "number" => "a number",
        "string" => "a string",
        "array" => "an array",
        "object" => "an object",
        _ => "of an unknown JSON type",
    }
}

/// The stream being scanned.
struct OpenStream {
    id: String,
    last_version: i64,
    last_position: i64,
    head: Option<i64>,
}

impl OpenStream {
    /// The head row must exist and equal the last version.
    fn close(self, report: &mut VerifyReport) {
        let message = match self.head {
            None => format!(
                "no row in `streams` for this stream, whose last event is version {}",
                self.last_version
            ),
            Some(head) if head != self.last_version => format!(
                "`streams` says version {head}, but the last event is version {}",
                self.last_version
            ),
            Some(_) => return,
        };
        report.add(Finding::problem(Check::StreamHead, message).at(
            &self.id,
            Some(self.last_version),
            Some(self.last_position),
        ));
    }
}
