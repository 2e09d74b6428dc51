//! Reading stored rows back into envelopes, with typed errors for rows that do not fit.

use chrono::{DateTime, Utc};
use eventsource_core::{
    Checkpoint, Metadata, Position, RecordedEvent, Snapshot, StoreError, StreamId, Version,
};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::PostgresError;

/// Decodes a row selected with `sql::EVENT_COLUMNS`.
pub(crate) fn decode_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    // Without the stream and version there is nothing to name: a driver-level failure.
    let stream_id: String = row
        .try_get("stream_id")
        .map_err(|e| StoreError::backend("reading the stream id of an event row", e))?;
    let stream_id = StreamId::from_raw(stream_id);
    let raw_version: i64 = row.try_get("version").map_err(|e| {
        StoreError::backend(
            format!("reading the version of an event row of stream `{stream_id}`"),
            e,
        )
    })?;
    let corrupt = |message: String| StoreError::CorruptRow {
        stream: stream_id.clone(),
        version: Version(u64::try_from(raw_version).unwrap_or(0)),
        message,
    };
    let version = u64::try_from(raw_version)
        .map(Version)
        .map_err(|_| corrupt(format!("negative version {raw_version}")))?;

    let raw_position: i64 = row
        .try_get("position")
        .map_err(|e| corrupt(format!("position: {e}")))?;
    let position = u64::try_from(raw_position)
        .map_err(|_| corrupt(format!("negative position {raw_position}")))?;
    let name: String = row
        .try_get("name")
        .map_err(|e| corrupt(format!("event name at position {position}: {e}")))?;
    // From here on the message names the event and its position too.
    let corrupt = |what: String| corrupt(format!("event `{name}` at position {position}: {what}"));

    let transaction: i64 = row
        .try_get("transaction_id")
        .map_err(|e| corrupt(format!("transaction id: {e}")))?;
    let transaction = u64::try_from(transaction)
        .map_err(|_| corrupt(format!("negative transaction id {transaction}")))?;
    let event_id: Uuid = row
        .try_get("event_id")
        .map_err(|e| corrupt(format!("event id: {e}")))?;
    let schema_version: i64 = row
        .try_get("schema_version")
        .map_err(|e| corrupt(format!("schema version: {e}")))?;
    let schema_version = u32::try_from(schema_version)
        .map_err(|_| corrupt(format!("schema version {schema_version} is out of range")))?;
    let payload: Value = row
        .try_get("payload")
        .map_err(|e| corrupt(format!("payload: {e}")))?;
    let metadata: Value = row
        .try_get("metadata")
        .map_err(|e| corrupt(format!("metadata: {e}")))?;
    let metadata: Metadata = serde_json::from_value(metadata)
        .map_err(|e| corrupt(format!("metadata is not an envelope's metadata: {e}")))?;
    let recorded_at: DateTime<Utc> = row
        .try_get("recorded_at")
        .map_err(|e| corrupt(format!("recorded_at: {e}")))?;

    Ok(RecordedEvent {
        event_id,
        stream_id,
        version,
        position: Position(position),
        checkpoint: Checkpoint::from_parts(transaction, position),
        name,
        schema_version,
        payload,
        metadata,
        recorded_at,
    })
}

/// Decodes a row selected by `Statements::load_snapshot`.
pub(crate) fn decode_snapshot(stream: &StreamId, row: &PgRow) -> Result<Snapshot, StoreError> {
    let corrupt = |version: u64, message: String| StoreError::CorruptRow {
        stream: stream.clone(),
        version: Version(version),
        message: format!("snapshot: {message}"),
    };
    let version: i64 = row
        .try_get("version")
        .map_err(|e| corrupt(0, format!("version: {e}")))?;
    let version =
        u64::try_from(version).map_err(|_| corrupt(0, format!("negative version {version}")))?;
    let state_fingerprint: String = row
        .try_get("state_fingerprint")
        .map_err(|e| corrupt(version, format!("state fingerprint: {e}")))?;
    let state: Value = row
        .try_get("state")
        .map_err(|e| corrupt(version, format!("state: {e}")))?;
    let taken_at: DateTime<Utc> = row
        .try_get("taken_at")
        .map_err(|e| corrupt(version, format!("taken_at: {e}")))?;
    Ok(Snapshot {
        stream_id: stream.clone(),
        version: Version(version),
        state_fingerprint,
        state,
        taken_at,
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

/// Reads the non-negative `bigint` column `column` (a count) of `row`, about `what`.
pub(crate) fn count(row: &PgRow, column: &str, what: &str) -> Result<u64, PostgresError> {
    let value: i64 = row
        .try_get(column)
        .map_err(|source| PostgresError::database(format!("reading {what}"), source))?;
    u64::try_from(value).map_err(|_| PostgresError::Corrupt {
        what: what.to_owned(),
        problem: format!("{column} is negative ({value})"),
    })
}

/// A stored (logical) transaction id, which is never negative.
pub(crate) fn transaction_id(value: i64, what: &str) -> Result<u64, PostgresError> {
    u64::try_from(value).map_err(|_| PostgresError::Corrupt {
        what: what.to_owned(),
        problem: format!("transaction id {value} is negative"),
    })
}
