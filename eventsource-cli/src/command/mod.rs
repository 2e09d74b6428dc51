//! One module per command.

pub(crate) mod import;
pub(crate) mod json_schema;
pub(crate) mod log;
pub(crate) mod migrate;
pub(crate) mod projection;
pub(crate) mod snapshot;
pub(crate) mod status;
pub(crate) mod stream;
pub(crate) mod verify;
