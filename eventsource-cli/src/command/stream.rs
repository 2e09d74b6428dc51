//! `stream ID`: the audit trail of one stream, optionally up to a version or an instant.

use std::io::Write;

use eventsource_core::{EventStore, RecordedEvent, StreamId, StreamRetirement, Version};
use eventsource_postgres::PostgresStore;
use serde_json::json;

use crate::Outcome;
use crate::cli::{RetireArgs, StreamArgs};
use crate::error::CliError;
use crate::output::{self, EventView, Output};

/// Events read per query.
const PAGE: usize = 500;

/// Prints the trail.
pub(crate) async fn run(
    store: &PostgresStore,
    args: &StreamArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    // Required by the parser unless a subcommand was given.
    let id = args.id.clone().unwrap_or_default();
    let stream = StreamId::from_raw(id.clone());
    let head = store.stream_version(&stream).await?;
    let status = store.stream_status(&stream).await?;
    let last_wanted = args.to_version.unwrap_or(u64::MAX);

    // Time travel: the trail up to the first event past the version or the instant, as
    // `Repository::load_at` and `load_as_of` fold it.
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut stored = 0u64;
    'pages: loop {
        let from = Version(stored + 1);
        let remaining = usize::try_from(last_wanted - stored).unwrap_or(usize::MAX);
        let page = store
            .read_stream(&stream, from, PAGE.min(remaining))
            .await?;
        let full = page.len() == PAGE;
        for event in page {
            stored = event.version.0;
            if args.as_of.is_some_and(|at| event.recorded_at > at) {
                break 'pages;
            }
            events.push(event);
            if stored >= last_wanted {
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    if head == Version::NONE && events.is_empty() && stored == 0 {
        return Err(CliError::UnknownStream {
            stream: id,
            schema: store.schema().to_string(),
        });
    }
    crate::personal::mark_sealed(store, &mut events).await?;
    let version = events.last().map_or(0, |e| e.version.0);
    let travelling = args.to_version.is_some() || args.as_of.is_some();

    if out.json {
        let views: Vec<EventView<'_>> = events.iter().map(EventView::new).collect();
        output::json(
            out,
            &json!({
                "stream": stream.as_str(),
                "category": stream.category(),
                "head_version": head.0,
                "version": version,
                "to_version": args.to_version,
                "as_of": args.as_of.map(output::time),
                "archived_at": status.as_ref().and_then(|s| s.archived_at).map(output::time),
                "deleted_at": status.as_ref().and_then(|s| s.deleted_at).map(output::time),
                "events": views,
            }),
        )?;
        return Ok(Outcome::Success);
    }

    writeln!(
        out,
        "stream {} (category {}), version {}",
        stream,
        stream.category(),
        head
    )?;
    if let Some(status) = &status {
        if let Some(at) = status.deleted_at {
            writeln!(
                out,
                "deleted at {}: its events are gone, its id stays taken",
                output::time(at)
            )?;
        } else if let Some(at) = status.archived_at {
            writeln!(
                out,
                "archived at {}: it takes no more appends",
                output::time(at)
            )?;
        }
    }
    if travelling {
        let mut point = Vec::new();
        if let Some(v) = args.to_version {
            point.push(format!("up to version {v}"));
        }
        if let Some(at) = args.as_of {
            point.push(format!("as of {}", output::time(at)));
        }
        writeln!(
            out,
            "{}: version {version} of {head} ({} events shown)",
            point.join(", "),
            events.len()
        )?;
    }
    for event in &events {
        writeln!(out)?;
        writeln!(
            out,
            "v{}  position {}  {}  {}  (schema v{})",
            event.version,
            event.position.0,
            output::time(event.recorded_at),
            event.name,
            event.schema_version
        )?;
        writeln!(
            out,
            "    event id  {}{}",
            event.event_id,
            output::idempotency_key(event)
        )?;
        writeln!(
            out,
            "    metadata  {}",
            output::compact(&output::metadata(event))
        )?;
        writeln!(out, "{}", output::pretty(&event.payload, 4))?;
    }
    Ok(Outcome::Success)
}

/// `stream archive ID`: after confirmation, archives the stream.
pub(crate) async fn archive(
    store: &PostgresStore,
    args: &RetireArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let stream = StreamId::from_raw(args.id.clone());
    if !args.yes {
        confirm(
            &format!(
                "Archive stream `{stream}`? It keeps its events, but takes no more appends. [y/N] "
            ),
            "archive",
            "archived",
            &args.id,
        )?;
    }
    let Some(status) = store.archive_stream(&stream).await? else {
        return Err(CliError::UnknownStream {
            stream: args.id.clone(),
            schema: store.schema().to_string(),
        });
    };
    let at = status.archived_at.map(output::time);
    if out.json {
        output::json(
            out,
            &json!({ "stream": stream.as_str(), "version": status.version.0, "archived_at": at }),
        )?;
    } else {
        writeln!(
            out,
            "stream {stream} archived at {} (version {}): it takes no more appends",
            at.unwrap_or_default(),
            status.version
        )?;
    }
    Ok(Outcome::Success)
}

/// `stream delete ID`: after confirmation, deletes the stream's events.
pub(crate) async fn delete(
    store: &PostgresStore,
    args: &RetireArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let stream = StreamId::from_raw(args.id.clone());
    let Some(status) = store.stream_status(&stream).await? else {
        return Err(CliError::UnknownStream {
            stream: args.id.clone(),
            schema: store.schema().to_string(),
        });
    };
    if !args.yes && status.deleted_at.is_none() {
        confirm(
            &format!(
                "Delete the {} events of stream `{stream}` for good? This cannot be undone. [y/N] ",
                status.version
            ),
            "delete",
            "deleted",
            &args.id,
        )?;
    }
    let deleted = store.delete_stream(&stream).await?;
    if out.json {
        output::json(
            out,
            &json!({ "stream": stream.as_str(), "deleted_events": deleted }),
        )?;
    } else {
        writeln!(
            out,
            "deleted {deleted} events of stream {stream}; it stays archived, its id is not reused"
        )?;
    }
    Ok(Outcome::Success)
}

fn confirm(
    question: &str,
    action: &'static str,
    done: &'static str,
    stream: &str,
) -> Result<(), CliError> {
    super::projection::ask(
        question,
        || CliError::RetireNotConfirmed {
            action,
            stream: stream.to_owned(),
        },
        || CliError::RetireDeclined {
            done,
            stream: stream.to_owned(),
        },
    )
}
