//! Derive macros of the eventsource framework; use them through the `eventsource` crate.
