//! Derive macros of the eventsource framework: `#[derive(Event)]`, `#[derive(EventEnum)]` and
//! `#[derive(Aggregate)]`.
//!
//! Use them through the `eventsource` crate, whose documentation describes every attribute and
//! shows what is generated. Each macro parses its input (`internals::attr`, `internals::ast`),
//! checks it (`internals::check`), and generates code (`event`, `event_enum`, `aggregate`); errors are
//! collected and reported together, beside stub impls that keep them from cascading.

mod aggregate;
mod debug;
mod event;
mod event_enum;
mod internals;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `eventsource::Event`; see the `eventsource` crate for the attributes.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    // `lock = "..."` is relative to the file the event is defined in, as `include_str!` is.
    let source_file = proc_macro::Span::call_site().local_file();
    let output = event::expand(&input, source_file.as_deref());
    debug::print("Event", &input.ident, &output);
    output.into()
}

/// Derives `eventsource::EventEnum` for an enum whose variants are events; see the
/// `eventsource` crate for the attributes.
#[proc_macro_derive(EventEnum, attributes(event))]
pub fn derive_event_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let source_file = proc_macro::Span::call_site().local_file();
    let output = event_enum::expand(&input, source_file.as_deref());
    debug::print("EventEnum", &input.ident, &output);
    output.into()
}

/// Derives `eventsource::Aggregate`, its event and command enums; see the `eventsource` crate
/// for the attributes.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let output = aggregate::expand(&input);
    debug::print("Aggregate", &input.ident, &output);
    output.into()
}
