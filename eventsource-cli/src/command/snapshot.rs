//! `snapshot delete`: snapshot maintenance.

use std::io::Write;

use eventsource_core::{SnapshotMaintenance, SnapshotScope, StreamId};
use eventsource_postgres::PostgresStore;
use serde_json::json;

use crate::Outcome;
use crate::cli::SnapshotDeleteArgs;
use crate::error::CliError;
use crate::output::{self, Output};

/// Deletes the snapshots the arguments select.
pub(crate) async fn delete(
    store: &PostgresStore,
    args: &SnapshotDeleteArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let (scope, what) = match (&args.stream, &args.aggregate_type) {
        (Some(stream), _) => (
            SnapshotScope::Stream(StreamId::from_raw(stream.clone())),
            format!("of stream {stream}"),
        ),
        (None, Some(category)) => (
            SnapshotScope::Category(category.clone()),
            format!("of aggregate type {category}"),
        ),
        (None, None) => (SnapshotScope::All, "of every stream".to_owned()),
    };
    let deleted = store.delete_snapshots(&scope).await?;
    if out.json {
        output::json(out, &json!({ "scope": scope, "deleted": deleted }))?;
    } else {
        writeln!(out, "deleted {deleted} snapshots {what}")?;
    }
    Ok(Outcome::Success)
}
