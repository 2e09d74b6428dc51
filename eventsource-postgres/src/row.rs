//! Reading stored rows back into envelopes, with typed errors for rows that do not fit.

use crate::error::{PostgresError, excerpt};
use chrono::{DateTime, Utc};
use eventsource_core::{
    Checkpoint, FoldEvent, FoldPayload, Metadata, ParkedEvent, Position, RecordedEvent, Snapshot,
    StoreError, StreamId, Version,
};
use sqlx::Postgres;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::types::Json;
use sqlx::{Row, TypeInfo, ValueRef};

/// A `timestamptz` column, decoded without sqlx 0.9's panic: its decoder adds the stored
/// microseconds to 2000-01-01 with chrono's `+`, which panics for `infinity`, `-infinity` and
/// instants beyond chrono's range (about 262,000 years either way), all of which PostgreSQL
/// stores. Those are an error here, so a stored row never panics a reader.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timestamp(pub(crate) DateTime<Utc>);

impl Timestamp {
    /// The instant.
    pub(crate) fn get(self) -> DateTime<Utc> {
        self.0
    }
}

impl sqlx::Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        /// 2000-01-01T00:00:00Z, PostgreSQL's epoch, in microseconds after the Unix epoch.
        const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
        if value.format() == PgValueFormat::Text {
            // Parsed from text, with no arithmetic that can overflow.
            return <DateTime<Utc> as sqlx::Decode<Postgres>>::decode(value).map(Timestamp);
        }
        let bytes: [u8; 8] = value.as_bytes()?.try_into().map_err(|_| {
            format!(
                "a timestamptz of {} bytes (8 expected)",
                value.as_bytes().map_or(0, <[u8]>::len)
            )
        })?;
        let micros = i64::from_be_bytes(bytes);
        match micros {
            i64::MAX => Err("the timestamp is infinity, not an instant".into()),
            i64::MIN => Err("the timestamp is -infinity, not an instant".into()),
            _ => micros
                .checked_add(POSTGRES_EPOCH_MICROS)
                .and_then(DateTime::from_timestamp_micros)
                .map(Timestamp)
                .ok_or_else(|| {
                    format!(
                        "the timestamp {micros} microseconds after 2000-01-01 is out of the \
                         range this library reads"
                    )
                    .into()
                }),
        }
    }
}

/// Column `column` of `row`; a value that does not decode is reported by `corrupt` with the
/// column's `label`.
fn column<T>(
    row: &PgRow,
    column: impl sqlx::ColumnIndex<PgRow>,
    label: &str,
    corrupt: impl FnOnce(String) -> StoreError,
) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|e| corrupt(format!("{label}: {e}")))
}

/// Decodes a row selected with `sql::EVENT_COLUMNS` first.
pub(crate) fn decode_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    decode_event_at(row, 0)
}

/// Decodes the `sql::EVENT_COLUMNS` of `row` that start at column `first`, by position: a
/// catch-up decodes every row it applies, and looking columns up by name cost a hash lookup
/// each (the statements' column order is checked by the `event_columns_in_order` test).
pub(crate) fn decode_event_at(row: &PgRow, first: usize) -> Result<RecordedEvent, StoreError> {
    let at = |n: usize| first + n;
    // Without the stream and version there is nothing to name: a driver-level failure.
    let stream_id: String = column(row, at(2), "the stream id of an event row", |e| {
        StoreError::backend("reading an event row", e)
    })?;
    let stream_id = StreamId::from_raw(stream_id);
    let raw_version: i64 = column(row, at(3), "the version", |e| {
        StoreError::backend(format!("reading an event row of stream `{stream_id}`"), e)
    })?;
    let corrupt = |message: String| StoreError::CorruptRow {
        stream: stream_id.clone(),
        version: Version(u64::try_from(raw_version).unwrap_or(0)),
        message,
    };
    let version = u64::try_from(raw_version)
        .map(Version)
        .map_err(|_| corrupt(format!("negative version {raw_version}")))?;
    let raw_position: i64 = column(row, at(0), "position", corrupt)?;
    let position = u64::try_from(raw_position)
        .map_err(|_| corrupt(format!("negative position {raw_position}")))?;
    let name: String = column(row, at(5), "event name", |e| {
        corrupt(format!("at position {position}: {e}"))
    })?;
    // From here on the message names the event and its position too (built only on failure:
    // this runs for every row a catch-up reads).
    let corrupt = |what: String| {
        corrupt(format!(
            "event `{}` at position {position}: {what}",
            excerpt(&name)
        ))
    };

    let transaction: i64 = column(row, at(1), "transaction id", corrupt)?;
    let transaction = u64::try_from(transaction)
        .map_err(|_| corrupt(format!("negative transaction id {transaction}")))?;
    let schema_version: i64 = column(row, at(6), "schema version", corrupt)?;
    let schema_version = u32::try_from(schema_version)
        .map_err(|_| corrupt(format!("schema version {schema_version} is out of range")))?;
    let mut metadata = metadata(row, at(8), corrupt)?;
    // The tracing ids of events written since migration 10 are in columns of their own
    // (NULL for older rows, whose ids are inside `metadata`).
    let correlation_id: Option<uuid::Uuid> = column(row, at(10), "correlation id", corrupt)?;
    let causation_id: Option<uuid::Uuid> = column(row, at(11), "causation id", corrupt)?;
    if correlation_id.is_some() {
        metadata.correlation_id = correlation_id;
    }
    if causation_id.is_some() {
        metadata.causation_id = causation_id;
    }
    // NULL in the three columns a lean read leaves out (`Envelope::Lean`; the table's columns
    // are NOT NULL): their lean values.
    let event_id =
        column::<Option<uuid::Uuid>>(row, at(4), "event id", corrupt)?.unwrap_or_default();
    let payload = column(row, at(7), "payload", corrupt)?;
    let recorded_at = column::<Option<Timestamp>>(row, at(9), "recorded_at", corrupt)?
        .map_or(DateTime::UNIX_EPOCH, Timestamp::get);
    Ok(RecordedEvent {
        event_id,
        stream_id,
        version,
        position: Position(position),
        checkpoint: Checkpoint::from_parts(transaction, position),
        schema_version,
        payload,
        metadata,
        recorded_at,
        name,
    })
}

/// The metadata in column `index`: empty metadata (most events carry none) without a JSON
/// parse, anything else straight from the bytes, without a `Value` tree in between.
fn metadata(
    row: &PgRow,
    index: usize,
    corrupt: impl FnOnce(String) -> StoreError,
) -> Result<Metadata, StoreError> {
    /// `{}` as a `jsonb` value in the binary format: the format version, then the text.
    const EMPTY_JSONB: &[u8] = b"\x01{}";
    // NULL from a lean read (`Envelope::Lean`; the column is NOT NULL), or `{}`.
    if let Ok(raw) = row.try_get_raw(index)
        && (raw.is_null()
            || raw.format() == PgValueFormat::Binary
                && *raw.type_info() == PgTypeInfo::with_name("jsonb")
                && raw.as_bytes().is_ok_and(|bytes| bytes == EMPTY_JSONB))
    {
        return Ok(Metadata::default());
    }
    let Json(metadata): Json<Metadata> = column(
        row,
        index,
        "metadata is not an envelope's metadata",
        corrupt,
    )?;
    Ok(metadata)
}

/// Decodes a row of `Statements::read_stream_for_fold` (columns by position) of `stream`.
pub(crate) fn decode_fold_event(stream: &StreamId, row: &PgRow) -> Result<FoldEvent, StoreError> {
    let raw_version: i64 = row.try_get(0).map_err(|e| {
        StoreError::backend(
            format!("reading an event row of stream `{stream}`"),
            format!("the version: {e}"),
        )
    })?;
    let corrupt = |message: String| StoreError::CorruptRow {
        stream: stream.clone(),
        version: Version(u64::try_from(raw_version).unwrap_or(0)),
        message,
    };
    let version = u64::try_from(raw_version)
        .map(Version)
        .map_err(|_| corrupt(format!("negative version {raw_version}")))?;
    let raw_position: i64 = row
        .try_get(1)
        .map_err(|e| corrupt(format!("position: {e}")))?;
    let position = u64::try_from(raw_position)
        .map_err(|_| corrupt(format!("negative position {raw_position}")))?;
    let name: String = row
        .try_get(2)
        .map_err(|e| corrupt(format!("at position {position}: event name: {e}")))?;
    let corrupt = |what: String| {
        corrupt(format!(
            "event `{}` at position {position}: {what}",
            excerpt(&name)
        ))
    };
    let schema_version: i64 = row
        .try_get(3)
        .map_err(|e| corrupt(format!("schema version: {e}")))?;
    let schema_version = u32::try_from(schema_version)
        .map_err(|_| corrupt(format!("schema version {schema_version} is out of range")))?;
    let payload = jsonb_text(row, 4).map_err(|e| corrupt(format!("payload: {e}")))?;
    Ok(FoldEvent {
        version,
        position: Position(position),
        name,
        schema_version,
        payload: FoldPayload::Json(payload),
    })
}

/// The JSON text of the `jsonb` column `index` of `row`, copied but not parsed: a load
/// deserializes it straight into the typed event (`EventEnum::decode_json`), where going
/// through a `serde_json::Value` first cost most of the client's time (BENCHMARKS.md, "Cold
/// load from raw bytes"). In the binary format `jsonb` is a format version byte (1) and then
/// the text; `json`, and either in the text format, is the text alone.
fn jsonb_text(row: &PgRow, index: usize) -> Result<Box<str>, String> {
    let value = row.try_get_raw(index).map_err(|e| e.to_string())?;
    if value.is_null() {
        return Err("NULL where a JSON payload belongs".to_owned());
    }
    let bytes = value.as_bytes().map_err(|e| e.to_string())?;
    let text = match (value.type_info().name(), value.format()) {
        ("JSONB", PgValueFormat::Binary) => match bytes.split_first() {
            Some((1, text)) => text,
            Some((version, _)) => {
                return Err(format!(
                    "jsonb format version {version} (this driver reads version 1)"
                ));
            }
            None => return Err("an empty jsonb value".to_owned()),
        },
        ("JSONB" | "JSON", _) => bytes,
        (other, _) => return Err(format!("a column of type {other}, not jsonb")),
    };
    std::str::from_utf8(text)
        .map(Box::from)
        .map_err(|e| format!("JSON text that is not UTF-8: {e}"))
}

/// Decodes a row selected with `sql::PARKED_COLUMNS`.
pub(crate) fn decode_parked(row: &PgRow) -> Result<ParkedEvent, StoreError> {
    // The stored event's columns follow the five of the parked event.
    let record = decode_event_at(row, 5)?;
    let (stream, version, position) = (record.stream_id.clone(), record.version, record.position);
    let corrupt = |message: String| StoreError::CorruptRow {
        stream: stream.clone(),
        version,
        message: format!("parked event at position {position}: {message}"),
    };
    let projection: String = column(row, "projection", "projection", corrupt)?;
    let error: String = column(row, "error", "error", corrupt)?;
    let attempts: i32 = column(row, "attempts", "attempts", corrupt)?;
    let parked_at = column::<Timestamp>(row, "parked_at", "parked_at", corrupt)?.get();
    let retry_requested = column(row, "retry_requested", "retry_requested", corrupt)?;
    let mut parked = ParkedEvent::new(projection, record, &error);
    parked.attempts = u32::try_from(attempts).unwrap_or(0);
    parked.parked_at = parked_at;
    parked.retry_requested = retry_requested;
    Ok(parked)
}

/// Decodes a row selected by `Statements::load_snapshot`.
pub(crate) fn decode_snapshot(stream: &StreamId, row: &PgRow) -> Result<Snapshot, StoreError> {
    let corrupt = |version: u64| {
        move |message: String| StoreError::CorruptRow {
            stream: stream.clone(),
            version: Version(version),
            message: format!("snapshot: {message}"),
        }
    };
    let version: i64 = column(row, "version", "version", corrupt(0))?;
    let version =
        u64::try_from(version).map_err(|_| corrupt(0)(format!("negative version {version}")))?;
    Ok(Snapshot {
        stream_id: stream.clone(),
        version: Version(version),
        state_fingerprint: column(
            row,
            "state_fingerprint",
            "state fingerprint",
            corrupt(version),
        )?,
        state: column(row, "state", "state", corrupt(version))?,
        taken_at: column::<Timestamp>(row, "taken_at", "taken_at", corrupt(version))?.get(),
    })
}

/// Decodes the `transaction_id` and `position` columns of a row of the `checkpoints` table.
pub(crate) fn decode_checkpoint(projection: &str, row: &PgRow) -> Result<Checkpoint, StoreError> {
    let corrupt = |what: String| {
        StoreError::backend(format!("decoding the checkpoint of `{projection}`"), what)
    };
    let part = |column: &str| -> Result<u64, StoreError> {
        let value: i64 = row
            .try_get(column)
            .map_err(|e| corrupt(format!("{column}: {e}")))?;
        u64::try_from(value).map_err(|_| corrupt(format!("negative {column} {value}")))
    };
    Ok(Checkpoint::from_parts(
        part("transaction_id")?,
        part("position")?,
    ))
}

/// Column `column` of a row about `what` (for the admin API).
pub(crate) fn value<T>(
    row: &PgRow,
    column: impl sqlx::ColumnIndex<PgRow>,
    what: &str,
) -> Result<T, PostgresError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|source| PostgresError::database(format!("reading {what}"), source))
}

/// The non-negative `bigint` column `column` (a count) of a row about `what`.
pub(crate) fn count(row: &PgRow, column: &str, what: &str) -> Result<u64, PostgresError> {
    let value: i64 = value(row, column, what)?;
    u64::try_from(value).map_err(|_| PostgresError::Corrupt {
        what: what.to_owned(),
        problem: format!("{column} is negative ({value})"),
    })
}

/// A stored (logical) transaction id, which is never negative, in a row about `what`.
pub(crate) fn transaction_id(value: i64, what: &str) -> Result<u64, PostgresError> {
    u64::try_from(value).map_err(|_| PostgresError::Corrupt {
        what: what.to_owned(),
        problem: format!("transaction id {value} is negative"),
    })
}
