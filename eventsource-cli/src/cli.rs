//! The command line: global options, commands and their arguments.

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use eventsource_postgres::SchemaName;

/// The help heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// Look into a live PostgreSQL event store: audit trails, the global log, projections, integrity.
#[derive(Debug, Parser)]
#[command(name = "eventsource", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The database, as postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL",
        help_heading = GLOBAL
    )]
    pub(crate) database_url: Option<String>,

    /// The schema the store lives in.
    #[arg(long, env = "EVENTSOURCE_SCHEMA", global = true, value_name = "NAME", default_value = SchemaName::DEFAULT, value_parser = parse_schema, help_heading = GLOBAL)]
    pub(crate) schema: SchemaName,

    /// Print JSON for scripts: one document, or one line per event for `log --follow`.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) json: bool,

    /// Seconds to wait for the server when connecting.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 5, help_heading = GLOBAL)]
    pub(crate) connect_timeout: u64,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the store's schema and tables, or apply the migrations it lacks.
    Migrate,
    /// Event and stream counts, head position, horizon lag, each projection's checkpoint and lag.
    Status,
    /// The audit trail of one stream, optionally up to a version or an instant (time travel);
    /// `stream archive ID` and `stream delete ID` retire it.
    Stream(StreamCommandArgs),
    /// The global log in commit order, filtered; `--follow` keeps tailing it.
    Log(LogArgs),
    /// Projection checkpoints.
    #[command(subcommand)]
    Projection(ProjectionCommand),
    /// Check the store's integrity; exits with status 1 when a problem is found.
    Verify(VerifyArgs),
    /// Snapshot maintenance.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// JSON Schemas of event versions, as the application exported them for a schema registry.
    #[command(subcommand, name = "json-schema")]
    JsonSchema(JsonSchemaCommand),
    /// Bulk-import events from JSON lines, one event per line, in one transaction (all or
    /// nothing): `{"stream": "account-ada", "version": 1, "name": "account.opened",
    /// "payload": {...}}`, optionally with `event_id`, `schema_version` and `metadata`. A
    /// stream is new (its first version 1) or continued right after its current version.
    Import(ImportArgs),
}

impl Command {
    /// Whether the command reads a store that must be at exactly the schema version this
    /// release knows. `migrate` changes it, `verify` reports on it, `status` checks it itself.
    pub(crate) fn needs_current_schema(&self) -> bool {
        matches!(
            self,
            Command::Stream(_)
                | Command::Log(_)
                | Command::Projection(_)
                | Command::Snapshot(_)
                | Command::JsonSchema(_)
                | Command::Import(_)
        )
    }
}

/// `stream ID` (the audit trail) or one of the `stream` subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct StreamCommandArgs {
    /// Archive or delete the stream instead of showing it.
    #[command(subcommand)]
    pub(crate) action: Option<StreamAction>,
    /// The trail to show.
    #[command(flatten)]
    pub(crate) show: StreamArgs,
}

/// `stream` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum StreamAction {
    /// The audit trail of one stream (the same as `stream ID`).
    Show(StreamArgs),
    /// Archive a stream: it keeps its events and stays readable, and every further append to it
    /// fails with an error naming it.
    Archive(RetireArgs),
    /// Delete a stream's events, for good, where the law demands it (it is archived first, and
    /// its snapshot and parked events go too). The stream's head stays as a tombstone, so its
    /// id is never reused; running projections are unaffected, and those behind skip the
    /// deleted events. Their read models are the application's to clean.
    Delete(RetireArgs),
}

/// Arguments of `stream archive` and `stream delete`.
#[derive(Debug, Args)]
pub(crate) struct RetireArgs {
    /// The stream id, e.g. `customer-c-1`.
    pub(crate) id: String,
    /// Do not ask for confirmation (needed when not run from a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

/// `snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Delete snapshots: of one stream, of an aggregate type, or all. Snapshots are a cache:
    /// loads fold the streams instead, and repositories with a snapshot policy write new ones.
    /// (Taking a snapshot needs the aggregate's code to fold the stream: the application does
    /// it with `Repository::snapshot`.)
    Delete(SnapshotDeleteArgs),
}

/// Arguments of `snapshot delete`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["stream", "aggregate_type", "all"])))]
pub(crate) struct SnapshotDeleteArgs {
    /// The snapshot of this stream.
    #[arg(long, value_name = "ID")]
    pub(crate) stream: Option<String>,
    /// The snapshots of every stream of this aggregate type (stream category), e.g. `cart`.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) aggregate_type: Option<String>,
    /// Every snapshot.
    #[arg(long)]
    pub(crate) all: bool,
}

/// `json-schema` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum JsonSchemaCommand {
    /// Validate stored payloads against the JSON Schema of their event name and version: the
    /// files `DIR/<name>/v<N>.schema.json` the application wrote
    /// (`eventsource::json_schema::write_json_schemas`). Reads the store's global log, or with
    /// `--payloads` a file (no database needed). Exits with status 1 when a payload does not
    /// validate or has no schema.
    Check(SchemaCheckArgs),
}

/// Arguments of `json-schema check`.
#[derive(Debug, Args)]
pub(crate) struct SchemaCheckArgs {
    /// The directory of schema files, `<name>/v<N>.schema.json`.
    #[arg(value_name = "DIR")]
    pub(crate) dir: std::path::PathBuf,

    /// Read the payloads from this file (`-` for stdin) instead of the store: JSON lines of
    /// events with `name`, `schema_version` and `payload` (as `log --follow --json` prints
    /// them), or one document with an `events` array (as `log --json` prints it).
    #[arg(long, value_name = "FILE")]
    pub(crate) payloads: Option<std::path::PathBuf>,

    /// From the store: only streams of this category; repeatable.
    #[arg(long, value_name = "CATEGORY", conflicts_with = "payloads")]
    pub(crate) category: Vec<String>,

    /// From the store: only events with this name; repeatable.
    #[arg(long, value_name = "NAME", conflicts_with = "payloads")]
    pub(crate) name: Vec<String>,
}

/// Arguments of `stream`.
#[derive(Debug, Args)]
pub(crate) struct StreamArgs {
    /// The stream id, e.g. `account-ada`.
    #[arg(required = true)]
    pub(crate) id: Option<String>,

    /// Show the trail up to this version (inclusive).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) to_version: Option<u64>,

    /// Show the trail as it was at this instant (RFC 3339, e.g. 2024-05-01T12:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) as_of: Option<DateTime<Utc>>,
}

/// Arguments of `log`.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Only streams of this category (the stream id's part before the first `-`); repeatable.
    #[arg(long, value_name = "CATEGORY")]
    pub(crate) category: Vec<String>,

    /// Only events with this name; repeatable.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Vec<String>,

    /// Only events recorded at or after this instant (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) since: Option<DateTime<Utc>>,

    /// Only events recorded at or before this instant (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "follow")]
    pub(crate) until: Option<DateTime<Utc>>,

    /// Only events at this global position or later.
    #[arg(long, value_name = "POSITION")]
    pub(crate) from_position: Option<u64>,

    /// Stop after this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,

    /// Keep waiting for new events (LISTEN/NOTIFY, with polling as a fallback); stop with Ctrl-C.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,

    /// With `--follow`: milliseconds between polls when no notification arrives.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub(crate) poll_interval: u64,
}

/// `projection` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ProjectionCommand {
    /// Every projection's checkpoint, how many of the events it reads it has still to apply, and
    /// whether a reset is pending.
    List,
    /// Ask for a projection to be rebuilt. Its checkpoint is marked, not deleted, and from
    /// then on only moves back to the start: the next runner start clears the read model with
    /// the projection's reset hook in the same transaction as the checkpoint and applies the
    /// whole log again (runners built with `rebuild_on_reset()`, or `rebuild()`), and any
    /// other runner refuses to run until it is rebuilt. A running runner's next commit is
    /// refused. Events are never applied twice on top of the old read model.
    Reset(ResetArgs),
    /// Events projections parked instead of stopping (`FailurePolicy::Park`), with their
    /// errors: every projection's, or one's.
    Parked(ParkedArgs),
    /// Ask a projection's runner to apply parked events again, at its next catch-up (a live
    /// runner within its poll interval); one that fails again is parked again.
    Retry(ParkedActionArgs),
    /// Delete parked events for good: the projection never applies them.
    Discard(DiscardArgs),
}

/// Arguments of `projection parked`.
#[derive(Debug, Args)]
pub(crate) struct ParkedArgs {
    /// Only this projection's parked events.
    pub(crate) name: Option<String>,
}

/// Which parked events of which projection.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["position", "all"])))]
pub(crate) struct ParkedActionArgs {
    /// The projection's name.
    pub(crate) name: String,

    /// The parked event at this global position.
    #[arg(long, value_name = "POSITION", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) position: Option<u64>,

    /// Every parked event of the projection.
    #[arg(long)]
    pub(crate) all: bool,
}

/// Arguments of `projection discard`.
#[derive(Debug, Args)]
pub(crate) struct DiscardArgs {
    /// Which parked events.
    #[command(flatten)]
    pub(crate) which: ParkedActionArgs,

    /// Do not ask for confirmation (needed when not run from a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

/// Arguments of `projection reset`.
#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// The projection's name.
    pub(crate) name: String,

    /// Do not ask for confirmation (needed when not run from a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Treat warnings (e.g. payloads that are not JSON objects) as problems.
    #[arg(long)]
    pub(crate) strict: bool,
}

/// Arguments of `import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The JSON-lines file, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub(crate) file: String,

    /// Events sent per COPY statement (memory use grows with it).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = parse_batch_size)]
    pub(crate) batch_size: usize,
}

fn parse_batch_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected a number of events from 1 to 1000000".to_owned()),
    }
}

fn parse_schema(name: &str) -> Result<SchemaName, String> {
    SchemaName::new(name).map_err(|e| e.to_string())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2024-05-01T12:00:00Z ({e})"))
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
