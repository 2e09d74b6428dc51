//! The integrity checks of [`PostgresAdmin::verify`], each finding located by stream, version,
//! position or projection.

use eventsource_core::Metadata;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::admin::PostgresAdmin;
use crate::error::{PostgresError, excerpt};
use crate::migrate::SCHEMA_VERSION;
use crate::row::transaction_id;
use crate::sql::{EVENT_TRIGGERS, Statement};

mod report;
pub use report::{Check, Finding, ScanProgress, Severity, VerifyReport};

/// Rows scanned per query.
const PAGE: i64 = 2_000;

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
        self.check_transaction_ids(&mut report).await?;
        Ok(report)
    }

    async fn fetch_all(
        &self,
        statement: &Statement,
        what: &str,
    ) -> Result<Vec<PgRow>, PostgresError> {
        statement
            .query()
            .fetch_all(self.store().pool())
            .await
            .map_err(self.failed(&format!("verify: {what}")))
    }

    /// The immutability triggers exist and fire (enabled `O`rigin or `A`lways).
    async fn check_triggers(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let schema = self.store().schema();
        let rows = sqlx::query(EVENT_TRIGGERS)
            .bind(schema.as_str())
            .fetch_all(self.store().pool())
            .await
            .map_err(self.failed("verify: listing the triggers of `events`"))?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = get(row, "name", "a trigger")?;
            let enabled: String = get(row, "enabled", "a trigger")?;
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
        let page = &self.store().sql().admin.scan_page;
        let mut cursor = (String::new(), i64::MIN);
        let mut open: Option<OpenStream> = None;
        let mut scanned = 0u64;
        loop {
            let rows = page
                .query()
                .bind(&cursor.0)
                .bind(cursor.1)
                .bind(PAGE)
                .fetch_all(self.store().pool())
                .await
                .map_err(self.failed("verify: scanning the events"))?;
            for row in &rows {
                let event = ScannedEvent::read(row)?;
                report.events += 1;
                let previous = match open.take() {
                    Some(current) if current.id == event.stream => current.last_version,
                    other => {
                        if let Some(done) = other {
                            done.close(report);
                        }
                        report.streams += 1;
                        0
                    }
                };
                event.check(previous, report);
                open = Some(OpenStream {
                    last_version: event.version,
                    last_position: event.position,
                    head: event.head,
                    id: event.stream.clone(),
                });
                cursor = (event.stream, event.version);
            }
            scanned += rows.len() as u64;
            progress(ScanProgress {
                scanned,
                total: total.max(scanned),
            });
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        if let Some(done) = open {
            done.close(report);
        }
        Ok(())
    }

    /// A head row in `streams` with no events behind it.
    async fn check_heads_without_events(
        &self,
        report: &mut VerifyReport,
    ) -> Result<(), PostgresError> {
        let statement = &self.store().sql().admin.heads_without_events;
        for row in self
            .fetch_all(statement, "looking for stream heads without events")
            .await?
        {
            let stream: String = get(&row, "stream_id", "a stream head")?;
            let version: i64 = get(&row, "version", "a stream head")?;
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
        let admin = &self.store().sql().admin;
        let rows = self
            .fetch_all(&admin.repeated_positions, "looking for repeated positions")
            .await?;
        for row in &rows {
            let position: i64 = get(row, 0, "a repeated position")?;
            let count: i64 = get(row, 1, "a repeated position")?;
            let holders: String = get(row, 2, "a repeated position")?;
            let mut finding = Finding::problem(
                Check::Positions,
                format!("position {position} is held by {count} events: {holders}"),
            );
            finding.position = Some(position);
            report.add(finding);
        }
        let rows = self
            .fetch_all(&admin.repeated_event_ids, "looking for repeated event ids")
            .await?;
        for row in &rows {
            let id: String = get(row, 0, "a repeated event id")?;
            let count: i64 = get(row, 1, "a repeated event id")?;
            let holders: String = get(row, 2, "a repeated event id")?;
            report.add(Finding::problem(
                Check::EventIds,
                format!("event id {id} is stored {count} times: {holders}"),
            ));
        }
        Ok(())
    }

    /// No checkpoint points past the head of the log (e.g. after restoring an older backup).
    async fn check_checkpoints(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let statement = &self.store().sql().admin.checkpoints_and_head;
        for row in self.fetch_all(statement, "reading the checkpoints").await? {
            report.checkpoints += 1;
            let projection: String = get(&row, "projection", "a checkpoint")?;
            let position: i64 = get(&row, "position", "a checkpoint")?;
            let head: i64 = get(&row, "head", "a checkpoint")?;
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

    /// No stored (logical) transaction id is at or beyond the cluster's next one: such events
    /// come from another cluster, and the store refuses to work until `migrate` re-bases it.
    /// Also a checkpoint beyond the cluster and every event, and a missing offset row.
    async fn check_transaction_ids(&self, report: &mut VerifyReport) -> Result<(), PostgresError> {
        let row = self
            .store()
            .sql()
            .admin
            .transaction_ids
            .query()
            .fetch_one(self.store().pool())
            .await
            .map_err(self.failed("verify: reading the newest transaction ids"))?;
        let what = "the newest transaction ids";
        let schema = self.store().schema();
        let next: Option<i64> = get(&row, "next", what)?;
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
        let newest: Option<i64> = get(&row, "events", what)?;
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
        let checkpoint: Option<i64> = get(&row, "checkpoints", what)?;
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

/// Reads column `column` of a row about `what`.
fn get<T>(
    row: &PgRow,
    column: impl sqlx::ColumnIndex<PgRow>,
    what: &str,
) -> Result<T, PostgresError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|source| PostgresError::database(format!("verify: reading {what}"), source))
}

/// One row of the scan, with what the checks look at.
struct ScannedEvent {
    stream: String,
    version: i64,
    position: i64,
    name: String,
    schema_version: i64,
    payload_type: String,
    metadata: Value,
    head: Option<i64>,
}

impl ScannedEvent {
    fn read(row: &PgRow) -> Result<Self, PostgresError> {
        let what = "an event row";
        Ok(ScannedEvent {
            stream: get(row, "stream_id", what)?,
            version: get(row, "version", what)?,
            position: get(row, "position", what)?,
            name: get(row, "name", what)?,
            schema_version: get(row, "schema_version", what)?,
            payload_type: get(row, "payload_type", what)?,
            metadata: get(row, "metadata", what)?,
            head: get(row, "head", what)?,
        })
    }

    /// The checks of one event, `previous` being the version before it in its stream (0 for
    /// the first).
    fn check(&self, previous: i64, report: &mut VerifyReport) {
        let at =
            |finding: Finding| finding.at(&self.stream, Some(self.version), Some(self.position));
        let (version, name) = (self.version, excerpt(&self.name));
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
        if !self.metadata.is_object() {
            report.add(at(Finding::problem(
                Check::Metadata,
                format!(
                    "the metadata of `{name}` is {}, not a JSON object",
                    kind(&self.metadata)
                ),
            )));
        } else if let Err(e) = serde_json::from_value::<Metadata>(self.metadata.clone()) {
            report.add(at(Finding::problem(
                Check::Metadata,
                format!("the metadata of `{name}` does not decode: {e}"),
            )));
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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
