//! Parse and check: from `syn` input to a checked description of what to generate.

pub(crate) mod ast;
pub(crate) mod attr;
pub(crate) mod check;
pub(crate) mod ctxt;
pub(crate) mod fingerprint;
pub(crate) mod lock;
pub(crate) mod personal;
pub(crate) mod schema;
pub(crate) mod unique;
