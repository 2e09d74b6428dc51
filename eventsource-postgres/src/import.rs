//! Bulk import: many streams' histories written through `COPY`, in one transaction.

use std::collections::HashMap;

use eventsource_core::{InvalidAppend, NewEvent, Position, StoreError, StreamId, Version};
use sqlx::postgres::PgDatabaseError;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::append::jsonb_text;
use crate::error::{PostgresError, excerpt, store_error};
use crate::sql::{Statement, bigint};
use crate::store::PostgresStore;

/// Events sent per `COPY` statement unless [`Import::batch_size`] says otherwise.
pub const DEFAULT_IMPORT_BATCH: usize = 10_000;

/// One event of a bulk import: the stream it goes to, the version it gets there, the event.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportEvent {
    /// The stream.
    pub stream: StreamId,
    /// Its version in the stream: 1 for a new stream, else the one after the previous.
    pub version: Version,
    /// The event (id, name, schema version, payload, metadata).
    pub event: NewEvent,
}

/// What a committed [`Import`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imported {
    /// Events written.
    pub events: u64,
    /// Streams written to (new or continued).
    pub streams: u64,
    /// The global positions of the first and last events written (`None` for an empty import).
    pub positions: Option<(Position, Position)>,
}

/// Why an import failed. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The event breaks the store's [`Limits`](eventsource_core::Limits), as an append of it
    /// would.
    #[error("import event #{index} (stream `{}`, version {version}) is invalid: {source}", excerpt(.stream.as_str()))]
    Invalid {
        /// The event's place in the import (0-based).
        index: u64,
        /// Its stream.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// What is wrong.
        #[source]
        source: Box<InvalidAppend>,
    },
    /// The event's version does not follow the stream's previous event in the import (or is 0).
    #[error("import event #{index}: stream `{}` gets version {version}, but {}", excerpt(.stream.as_str()), match .previous { Some(p) => format!("its previous event in the import is version {p} (versions must run on without gaps or repeats)"), None => "versions start at 1".to_owned() })]
    Version {
        /// The event's place in the import (0-based).
        index: u64,
        /// Its stream.
        stream: StreamId,
        /// The version it asked for.
        version: Version,
        /// The stream's previous version in the import, if it has one.
        previous: Option<Version>,
    },
    /// The stream's current version is not the one before the import's first event of it.
    #[error("import event #{index}: stream `{}` is at version {actual}, but the import's first event of it is version {first}: an import starts new streams at version 1 or continues a stream right after its current version", excerpt(.stream.as_str()))]
    Conflict {
        /// The place in the import (0-based) of its first event of the stream.
        index: u64,
        /// The stream.
        stream: StreamId,
        /// The import's first version of it.
        first: Version,
        /// The stream's version in the store (0: no stream).
        actual: Version,
    },
    /// The event's id is stored already, or repeated in the import.
    #[error("import event #{index}: event id {event_id} (stream `{}`, version {version}) is {}", excerpt(.stream.as_str()), match .existing { Some((s, v)) => format!("already stored, at stream `{}` version {v}", excerpt(s.as_str())), None => "repeated in the import".to_owned() })]
    DuplicateEventId {
        /// The place in the import (0-based) of the event with that id (its first, when the
        /// import repeats it).
        index: u64,
        /// The id.
        event_id: Uuid,
        /// The stream of the imported event with that id.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// Where the id is stored, when it was stored before the import.
        existing: Option<(StreamId, Version)>,
    },
    /// An earlier call of this import failed; the import was rolled back.
    #[error("the import failed earlier and was rolled back; start a new one")]
    Aborted,
    /// A statement failed, or an event could not be encoded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store does not fit the cluster (see [`PostgresError::ClusterMoved`]).
    #[error(transparent)]
    Postgres(#[from] PostgresError),
}

/// Where a stream stands in the import.
#[derive(Clone, Copy)]
struct Head {
    /// The version its head row has in the import's transaction: before the import until a
    /// batch with the stream is sent (checked then), then the last version sent.
    sent: u64,
    /// The last version pushed.
    last: u64,
    /// Whether the batch being built has an event of the stream.
    in_batch: bool,
    /// The place of its first event in the import.
    first_index: u64,
}

/// An event of the batch being built: what error messages name.
struct Pending {
    index: u64,
    stream: StreamId,
    version: u64,
    event_id: Uuid,
}

/// A bulk import in progress: an open transaction into which [`push`](Self::push) sends
/// events, `COPY` batch by batch, and which [`finish`](Self::finish) commits. Dropped without
/// `finish`, it is rolled back.
///
/// What an import may write, and how it stays indistinguishable from appends:
///
/// - **Versions.** Each [`ImportEvent`] carries the version it gets in its stream. An import
///   starts a new stream at version 1, or continues an existing one right after its current
///   version (what the stream's head row in `streams` says when the import gets to it); within
///   the import a stream's versions run on without gaps or repeats. Anything else is refused
///   ([`ImportError::Conflict`], [`ImportError::Version`]). A stream's events need not be
///   contiguous in the input: streams may interleave.
/// - **Validation.** Every event passes the store's [`Limits`](eventsource_core::Limits)
///   exactly as an append's would (stream id, name, schema version, JSON depth and size), and
///   is encoded by the same code. Event ids must be new: an id already stored, or repeated in
///   the import, fails it ([`ImportError::DuplicateEventId`]); an import is not an idempotent
///   retry.
/// - **One transaction.** Everything is written by one transaction, committed by
///   [`Import::finish`]: nothing is visible before, and a failure (or dropping the [`Import`])
///   rolls all of it back. Its events carry the transaction's logical id (migration 4), in
///   input order, so readers see them as the events of one (large) append: global reads stop
///   below the open import and never skip one of its events, and projections catch up over
///   them as over any other. While it runs, global readers wait for it (its events will sort
///   before any append that commits meanwhile) — the price of a gap-free log, paid by the
///   global readers of every store in the cluster, as for any long transaction: import
///   before going live, or in pieces.
/// - **Heads and notifications.** The heads of the streams in each `COPY` batch are checked and
///   moved by one statement before the batch is sent (their row locks held until commit, so
///   a concurrent append to an imported stream waits for the import, and then conflicts;
///   another import of the same streams waits too, and may be refused as a deadlock, a
///   transient error). Listeners are notified once, after the commit, with the last position.
pub struct Import {
    store: PostgresStore,
    tx: Option<Transaction<'static, Postgres>>,
    transaction_id: i64,
    batch_size: usize,
    copy: Statement,
    heads_statement: Statement,
    /// The `COPY` text of the batch being built.
    buffer: Vec<u8>,
    batch: Vec<Pending>,
    /// Streams with an event in the batch being built, in first-seen order.
    batch_streams: Vec<StreamId>,
    heads: HashMap<StreamId, Head>,
    pushed: u64,
}

impl std::fmt::Debug for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Import")
            .field("schema", &self.store.schema().as_str())
            .field("transaction_id", &self.transaction_id)
            .field("batch_size", &self.batch_size)
            .field("pushed", &self.pushed)
            .field("aborted", &self.tx.is_none())
            .finish()
    }
}

impl PostgresStore {
    /// Starts a bulk import (see [`Import`]): opens its transaction.
    pub async fn begin_import(&self) -> Result<Import, ImportError> {
        // New events would sort before restored ones in a store moved from another cluster.
        self.ensure_fits().await?;
        let what = "starting an import";
        let mut tx = crate::begin::begin(self.pool())
            .await
            .map_err(self.failed(what.into()))?;
        let s = self.schema().quoted();
        let transaction_id: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {s}.logical_xact_id()")))
                .fetch_one(&mut *tx)
                .await
                .map_err(self.failed(what.into()))?;
        Ok(Import {
            store: self.clone(),
            tx: Some(tx),
            transaction_id,
            batch_size: DEFAULT_IMPORT_BATCH,
            copy: copy_statement(&s),
            heads_statement: heads_statement(&s),
            buffer: Vec::with_capacity(1 << 20),
            batch: Vec::new(),
            batch_streams: Vec::new(),
            heads: HashMap::new(),
            pushed: 0,
        })
    }

    /// Imports `events` in one transaction (see [`Import`]):
    /// [`begin_import`](Self::begin_import), [`push`](Import::push) each,
    /// [`finish`](Import::finish).
    pub async fn import(
        &self,
        events: impl IntoIterator<Item = ImportEvent>,
    ) -> Result<Imported, ImportError> {
        let mut import = self.begin_import().await?;
        for event in events {
            import.push(event).await?;
        }
        import.finish().await
    }
}

/// `COPY` into `events` of schema `s` (quoted), text format: the columns [`encode`] writes.
fn copy_statement(s: &str) -> Statement {
    format!(
        "COPY {s}.events (transaction_id, stream_id, version, event_id, name, schema_version, \
         payload, metadata, correlation_id, causation_id) FROM STDIN"
    )
    .into()
}

/// Checks and moves the heads of a batch's streams in one statement: `$1` streams (in stream
/// order, the order appends lock heads in), `$2` the version each must be at (0: no stream),
/// `$3` the version it moves to. Returns the first stream (by id) that was not where expected,
/// with its version (statement snapshot); no row when all moved.
fn heads_statement(s: &str) -> Statement {
    format!(
        "WITH req AS ( \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) \
                 AS r(stream_id, expected, head) \
         ), \
         moved AS ( \
             UPDATE {s}.streams h SET version = r.head \
               FROM (SELECT * FROM req WHERE expected > 0 ORDER BY stream_id) r \
              WHERE h.stream_id = r.stream_id AND h.version = r.expected \
             RETURNING h.stream_id \
         ), \
         created AS ( \
             INSERT INTO {s}.streams (stream_id, version) \
             SELECT stream_id, head FROM req WHERE expected = 0 ORDER BY stream_id \
             ON CONFLICT (stream_id) DO NOTHING \
             RETURNING stream_id \
         ) \
         SELECT r.stream_id, \
                coalesce((SELECT h.version FROM {s}.streams h \
                           WHERE h.stream_id = r.stream_id), 0) AS actual \
           FROM req r \
          WHERE r.stream_id NOT IN (SELECT stream_id FROM moved \
                                    UNION ALL SELECT stream_id FROM created) \
          ORDER BY r.stream_id LIMIT 1"
    )
    .into()
}

impl Import {
    /// Sets how many events each `COPY` statement sends (at least 1; default
    /// [`DEFAULT_IMPORT_BATCH`]). Larger batches use more memory and fewer round trips.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// How many events were pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Adds `event` to the import: checked and encoded now, sent with its batch. Fails on an
    /// invalid event at once, and on a conflict or a stored id when its batch is sent; after
    /// any failure the import is rolled back and every further call fails with
    /// [`ImportError::Aborted`].
    pub async fn push(&mut self, event: ImportEvent) -> Result<(), ImportError> {
        if self.tx.is_none() {
            return Err(ImportError::Aborted);
        }
        if let Err(error) = self.add(event) {
            self.abort().await;
            return Err(error);
        }
        if self.batch.len() >= self.batch_size {
            self.flush_or_abort().await?;
        }
        Ok(())
    }

    /// Sends what is left and commits; then notifies listeners.
    pub async fn finish(mut self) -> Result<Imported, ImportError> {
        if self.tx.is_none() {
            return Err(ImportError::Aborted);
        }
        self.flush_or_abort().await?;
        let Some(mut tx) = self.tx.take() else {
            return Err(ImportError::Aborted);
        };
        let what = "finishing an import";
        let failed = |e| ImportError::Store(store_error(what, e));
        let s = self.store.schema().quoted();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT min(position) AS first, max(position) AS last FROM {s}.events \
              WHERE transaction_id = $1"
        )))
        .bind(self.transaction_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
        let first: Option<i64> = row.try_get("first").map_err(failed)?;
        let last: Option<i64> = row.try_get("last").map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        let positions = first.zip(last).map(|(first, last)| {
            let position = |p: i64| Position(u64::try_from(p).unwrap_or(0));
            (position(first), position(last))
        });
        if let Some((_, last)) = positions {
            self.store.notifications().appended(self.store.pool(), last);
        }
        Ok(Imported {
            events: self.pushed,
            streams: self.heads.len() as u64,
            positions,
        })
    }

    /// Rolls the import back (also what dropping it does).
    async fn abort(&mut self) {
        if let Some(tx) = self.tx.take() {
            // The connection goes back to the pool either way.
            let _ = tx.rollback().await;
        }
    }

    /// Checks `event` and appends it to the batch being built.
    fn add(&mut self, import: ImportEvent) -> Result<(), ImportError> {
        let ImportEvent {
            stream,
            version,
            event,
        } = import;
        let index = self.pushed;
        let invalid = |source| ImportError::Invalid {
            index,
            stream: stream.clone(),
            version,
            source: Box::new(source),
        };
        let limits = self.store.limits();
        limits.check_stream_id(&stream).map_err(invalid)?;
        limits.check_event(&stream, 0, &event).map_err(invalid)?;
        let v = version.0;
        let version_error = |previous: Option<u64>| ImportError::Version {
            index,
            stream: stream.clone(),
            version,
            previous: previous.map(Version),
        };
        if v == 0 || v > i64::MAX as u64 {
            return Err(version_error(None));
        }
        let new_in_batch = match self.heads.get_mut(&stream) {
            Some(head) => {
                if v != head.last.saturating_add(1) {
                    return Err(version_error(Some(head.last)));
                }
                head.last = v;
                !std::mem::replace(&mut head.in_batch, true)
            }
            None => {
                self.heads.insert(
                    stream.clone(),
                    Head {
                        sent: v - 1,
                        last: v,
                        in_batch: true,
                        first_index: index,
                    },
                );
                true
            }
        };
        encode(&mut self.buffer, self.transaction_id, &stream, v, &event)?;
        if new_in_batch {
            self.batch_streams.push(stream.clone());
        }
        self.batch.push(Pending {
            index,
            stream,
            version: v,
            event_id: event.event_id,
        });
        self.pushed += 1;
        Ok(())
    }
}

impl Import {
    /// [`Self::flush`], rolling the import back if it fails.
    async fn flush_or_abort(&mut self) -> Result<(), ImportError> {
        let result = self.flush().await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Sends the batch being built: moves its streams' heads (checking where they were), then
    /// `COPY`s its events.
    async fn flush(&mut self) -> Result<(), ImportError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let Some(tx) = self.tx.as_mut() else {
            return Err(ImportError::Aborted);
        };
        let what = "importing a batch of events";
        // Heads in stream order, as every append locks them.
        self.batch_streams.sort_unstable();
        let mut expected = Vec::with_capacity(self.batch_streams.len());
        let mut moved_to = Vec::with_capacity(self.batch_streams.len());
        for stream in &self.batch_streams {
            let head = self.heads.get(stream).copied().unwrap_or(Head {
                sent: 0,
                last: 0,
                in_batch: false,
                first_index: 0,
            });
            expected.push(bigint(head.sent));
            moved_to.push(bigint(head.last));
        }
        let names: Vec<&str> = self.batch_streams.iter().map(StreamId::as_str).collect();
        let refused = self
            .heads_statement
            .query()
            .bind(names)
            .bind(expected)
            .bind(moved_to)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| store_error(what, e))?;
        if let Some(row) = refused {
            let stream: String = row.try_get("stream_id").map_err(|e| store_error(what, e))?;
            let actual: i64 = row.try_get("actual").map_err(|e| store_error(what, e))?;
            let stream = StreamId::from_raw(stream);
            let (first, index) = self
                .heads
                .get(&stream)
                .map_or((0, 0), |h| (h.sent, h.first_index));
            let first = first + 1;
            return Err(ImportError::Conflict {
                index,
                stream,
                first: Version(first),
                actual: Version(u64::try_from(actual).unwrap_or(0)),
            });
        }
        let sent = async {
            let mut copy = tx.copy_in_raw(&self.copy.text()).await?;
            copy.send(self.buffer.as_slice()).await?;
            copy.finish().await
        }
        .await;
        if let Err(error) = sent {
            return Err(self.copy_failed(error).await);
        }
        for stream in self.batch_streams.drain(..) {
            if let Some(head) = self.heads.get_mut(&stream) {
                head.sent = head.last;
                head.in_batch = false;
            }
        }
        self.batch.clear();
        self.buffer.clear();
        Ok(())
    }

    /// The error of a failed `COPY`: an id already stored or repeated named with its event,
    /// anything else as the backend's error.
    async fn copy_failed(&self, error: sqlx::Error) -> ImportError {
        let duplicate = error
            .as_database_error()
            .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
            .filter(|db| db.code() == "23505" && db.constraint() == Some("events_event_id_unique"))
            .and_then(|db| db.detail())
            .and_then(duplicate_key);
        let Some(event_id) = duplicate else {
            return ImportError::Store(store_error("importing a batch of events (COPY)", error));
        };
        let Some(pending) = self.batch.iter().find(|p| p.event_id == event_id) else {
            return ImportError::Store(store_error("importing a batch of events (COPY)", error));
        };
        // Where it is stored, if it was before the import (the import's own rows are not
        // visible outside its transaction).
        let s = self.store.schema().quoted();
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT stream_id, version FROM {s}.events WHERE event_id = $1"
        )))
        .bind(event_id)
        .fetch_optional(self.store.pool())
        .await
        .ok()
        .flatten()
        .and_then(|row| {
            let stream: String = row.try_get("stream_id").ok()?;
            let version: i64 = row.try_get("version").ok()?;
            Some((
                StreamId::from_raw(stream),
                Version(u64::try_from(version).ok()?),
            ))
        });
        ImportError::DuplicateEventId {
            index: pending.index,
            event_id,
            stream: pending.stream.clone(),
            version: Version(pending.version),
            existing,
        }
    }
}

/// The id in a unique violation's detail, `Key (event_id)=(<uuid>) already exists.`
fn duplicate_key(detail: &str) -> Option<Uuid> {
    let start = detail.find(")=(")? + 3;
    let end = start + detail.get(start..)?.find(')')?;
    detail.get(start..end)?.parse().ok()
}

/// Appends the `COPY` text row of `event` (the columns of [`copy_statement`]) to `buffer`.
fn encode(
    buffer: &mut Vec<u8>,
    transaction_id: i64,
    stream: &StreamId,
    version: u64,
    event: &NewEvent,
) -> Result<(), ImportError> {
    use std::io::Write;
    let encoding_error = |what: &str, e: serde_json::Error| {
        ImportError::Store(StoreError::backend(
            format!(
                "encoding the {what} of event `{}` (stream `{}`, version {version})",
                excerpt(&event.name),
                excerpt(stream.as_str())
            ),
            e,
        ))
    };
    let payload = jsonb_text(&event.payload).map_err(|e| encoding_error("payload", e))?;
    // The tracing ids in columns of their own, the rest in `metadata` (migration 10).
    let (correlation_id, causation_id) =
        (event.metadata.correlation_id, event.metadata.causation_id);
    let metadata = if correlation_id.is_none() && causation_id.is_none() {
        jsonb_text(&event.metadata)
    } else {
        let mut rest = event.metadata.clone();
        (rest.correlation_id, rest.causation_id) = (None, None);
        jsonb_text(&rest)
    }
    .map_err(|e| encoding_error("metadata", e))?;
    // Writing to a Vec cannot fail.
    let _ = write!(buffer, "{transaction_id}\t");
    put_text(buffer, stream.as_str().as_bytes());
    let _ = write!(buffer, "\t{version}\t{}\t", event.event_id);
    put_text(buffer, event.name.as_bytes());
    let _ = write!(buffer, "\t{}\t", event.schema_version);
    put_text(buffer, payload.get().as_bytes());
    buffer.push(b'\t');
    put_text(buffer, metadata.get().as_bytes());
    for id in [correlation_id, causation_id] {
        match id {
            Some(id) => {
                let _ = write!(buffer, "\t{id}");
            }
            None => buffer.extend_from_slice(b"\t\\N"),
        }
    }
    buffer.push(b'\n');
    Ok(())
}

/// `text` as a value of `COPY`'s text format: backslash, newline, carriage return and tab
/// escaped.
pub(crate) fn put_text(buffer: &mut Vec<u8>, mut text: &[u8]) {
    while let Some(at) = text
        .iter()
        .position(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'))
    {
        buffer.extend_from_slice(&text[..at]);
        buffer.extend_from_slice(match text[at] {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => b"\\t",
        });
        text = &text[at + 1..];
    }
    buffer.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_the_format_reads_specially() {
        let mut buffer = Vec::new();
        put_text(&mut buffer, b"a\\b\tc\nd\re");
        assert_eq!(buffer, b"a\\\\b\\tc\\nd\\re");
        let mut buffer = Vec::new();
        put_text(&mut buffer, "plain é".as_bytes());
        assert_eq!(buffer, "plain é".as_bytes());
    }

    #[test]
    fn the_duplicate_key_is_read_from_the_detail() {
        let id = Uuid::now_v7();
        assert_eq!(
            duplicate_key(&format!("Key (event_id)=({id}) already exists.")),
            Some(id)
        );
        assert_eq!(
            duplicate_key("Key (event_id)=(nonsense) already exists."),
            None
        );
        assert_eq!(duplicate_key("no key"), None);
    }
}
