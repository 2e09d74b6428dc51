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
mod shape;

use std::path::Path;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `eventsource::Event`; see the `eventsource` crate for the attributes.
#[proc_macro_derive(Event, attributes(event, personal, tag))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    run("Event", &input, event::expand)
}

/// Derives `eventsource::EventEnum` for an enum whose variants are events; see the
/// `eventsource` crate for the attributes.
#[proc_macro_derive(EventEnum, attributes(event))]
pub fn derive_event_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    run("EventEnum", &input, event_enum::expand)
}

/// Derives `eventsource::Aggregate`, its event and command enums; see the `eventsource` crate
/// for the attributes.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    run("Aggregate", &input, |input, _| aggregate::expand(input))
}

/// Derives `eventsource::Shape` for a type used inside an event or an aggregate's state, and
/// checks it against the schema lock; see the `eventsource` crate for the attributes.
#[proc_macro_derive(Shape, attributes(shape))]
pub fn derive_shape(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    run("Shape", &input, shape::expand)
}

/// Expands `input` with the derive's `expand`, given the file the input is defined in (which
/// `lock = "..."` is relative to, as `include_str!` paths are), and prints the expansion if
/// `EVENTSOURCE_MACROS_DEBUG` asks for it.
fn run(
    derive: &str,
    input: &DeriveInput,
    expand: impl FnOnce(&DeriveInput, Option<&Path>) -> proc_macro2::TokenStream,
) -> TokenStream {
    let source_file = proc_macro::Span::call_site().local_file();
    let output = expand(input, source_file.as_deref());
    debug::print(derive, &input.ident, &output);
    output.into()
}
