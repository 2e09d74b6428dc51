//! `eventsource`: look into a live PostgreSQL event store.
//!
//! ```text
//! eventsource migrate                       create or update the schema
//! eventsource status                        counts, head, horizon lag, projections
//! eventsource stream account-ada            the audit trail of a stream
//! eventsource stream account-ada --to-version 2 | --as-of 2024-05-01T12:00:00Z
//! eventsource log --category account --name account.deposited --since ... --limit 50
//! eventsource log --follow --json           tail the global log as JSON lines
//! eventsource projection list | reset NAME --yes
//! eventsource verify                        integrity checks; exit 1 on problems
//! eventsource json-schema check schemas/    stored payloads against exported JSON Schemas
//! eventsource json-schema check schemas/ --payloads events.jsonl   (no database)
//! eventsource import events.jsonl | -       bulk import of JSON lines, all or nothing
//! ```
//!
//! Global options: `--database-url` (or `DATABASE_URL`), `--schema` (default `eventsource`),
//! `--json`. Exit status: 0 success, 1 `verify` found problems, 2 the command failed (bad
//! arguments, unreachable server, schema not migrated, unknown stream...), with a one-line
//! message on stderr.

mod cli;
mod command;
mod database;
mod error;
mod output;
mod personal;
mod progress;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{
    Cli, Command, JsonSchemaCommand, ProjectionCommand, SnapshotCommand, StreamAction,
};
use crate::error::CliError;
use crate::output::Output;

/// What a command that ran to the end found.
pub(crate) enum Outcome {
    /// All is well.
    Success,
    /// `verify` found problems.
    Problems,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&CliError::Output(error)),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = runtime.block_on(run(&cli, &mut out));
    let result = result.and_then(|outcome| out.flush().map(|()| outcome).map_err(Into::into));
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        // A reader that went away (`| head`) is not a failure.
        Err(CliError::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

async fn run(cli: &Cli, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let out = &mut Output::new(out, cli.json);
    // Payloads from a file need no database.
    if let Command::JsonSchema(JsonSchemaCommand::Check(args)) = &cli.command
        && let Some(file) = &args.payloads
    {
        return command::json_schema::check_file(args, file, out);
    }
    let admin = database::connect(cli).await?.admin();
    if cli.command.needs_current_schema() {
        admin.require_current_schema().await?;
    }
    match &cli.command {
        Command::Migrate => command::migrate::run(&admin, out).await,
        Command::Status => command::status::run(&admin, out).await,
        Command::Stream(args) => match &args.action {
            None => command::stream::run(admin.store(), &args.show, out).await,
            Some(StreamAction::Show(show)) => command::stream::run(admin.store(), show, out).await,
            Some(StreamAction::Archive(retire)) => {
                command::stream::archive(admin.store(), retire, out).await
            }
            Some(StreamAction::Delete(retire)) => {
                command::stream::delete(admin.store(), retire, out).await
            }
        },
        Command::Snapshot(SnapshotCommand::Delete(args)) => {
            command::snapshot::delete(admin.store(), args, out).await
        }
        Command::Log(args) => command::log::run(&admin, args, out).await,
        Command::Projection(ProjectionCommand::List) => {
            command::projection::list(&admin, out).await
        }
        Command::Projection(ProjectionCommand::Reset(args)) => {
            command::projection::reset(&admin, args, out).await
        }
        Command::Projection(ProjectionCommand::Parked(args)) => {
            command::projection::parked(&admin, args, out).await
        }
        Command::Projection(ProjectionCommand::Retry(args)) => {
            command::projection::retry(&admin, args, out).await
        }
        Command::Projection(ProjectionCommand::Discard(args)) => {
            command::projection::discard(&admin, args, out).await
        }
        Command::Verify(args) => command::verify::run(&admin, args, out).await,
        Command::JsonSchema(JsonSchemaCommand::Check(args)) => {
            command::json_schema::check_store(&admin, args, out).await
        }
        Command::Import(args) => command::import::run(admin.store(), args, out).await,
    }
}

/// Prints `error` as one line on stderr; exit status 2.
fn fail(error: &CliError) -> ExitCode {
    let message = error.to_string();
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let _ = writeln!(io::stderr(), "eventsource: error: {one_line}");
    ExitCode::from(2)
}
