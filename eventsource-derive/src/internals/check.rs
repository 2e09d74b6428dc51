//! Rules across attributes and the input's shape, one `check_*` function each.
//!
//! Rules that need other types' constants (an event's `previous` has the same name and is one
//! version lower; an aggregate's events have distinct names) cannot be decided here: the
//! generators emit them as `const` assertions instead.

use std::collections::HashMap;

use quote::ToTokens;
use syn::{Data, DeriveInput};

use crate::internals::ast::{Aggregate, Event, Members};
use crate::internals::ctxt::Ctxt;

/// Every check of `#[derive(Event)]`.
pub(crate) fn event(cx: &Ctxt, event: &Event) {
    check_shape(
        cx,
        event.input,
        "Event",
        "an event is one fact with one shape",
    );
    check_event_name(cx, event);
    check_version_chain(cx, event);
}

/// Every check of `#[derive(Aggregate)]`.
pub(crate) fn aggregate(cx: &Ctxt, aggregate: &Aggregate) {
    check_shape(
        cx,
        aggregate.input,
        "Aggregate",
        "the state of an aggregate is a struct",
    );
    check_aggregate_name(cx, aggregate);
    check_events_listed(cx, aggregate);
    if let Some(events) = &aggregate.events {
        check_listed_once(cx, events, "event");
    }
    check_listed_once(cx, &aggregate.commands, "command");
    check_snapshot(cx, aggregate);
}

// Only non-generic structs can be derived on: `enum Cart {..}`, `union U {..}` and
// `struct Cart<T>` are rejected (a stored shape must be one concrete type).
fn check_shape(cx: &Ctxt, input: &DeriveInput, derive: &str, why: &str) {
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(data) => cx.error_spanned_by(
            data.enum_token,
            format!("`#[derive({derive})]` supports structs only, not enums: {why}"),
        ),
        Data::Union(data) => cx.error_spanned_by(
            data.union_token,
            format!("`#[derive({derive})]` supports structs only, not unions: {why}"),
        ),
    }
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &input.generics,
            format!(
                "`#[derive({derive})]` does not support generic types: a stored shape must be one concrete type"
            ),
        );
    }
}

// An event name is non-empty, starts with an ASCII letter and uses only ASCII letters, digits,
// `_`, `.` and `-`: `name = "cart.item_added"`, not `name = ""` or `name = "item added!"`.
fn check_event_name(cx: &Ctxt, event: &Event) {
    let name = event.name.value();
    if name.is_empty() {
        cx.error_spanned_by(
            &event.name,
            "event name is empty: name the fact, e.g. `name = \"cart.item_added\"`",
        );
        return;
    }
    let well_formed = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !well_formed {
        cx.error_spanned_by(
            &event.name,
            format!(
                "malformed event name `{name}`: use ASCII letters, digits, `_`, `.` and `-`, starting with a letter, e.g. `cart.item_added`"
            ),
        );
    }
}

// Versions start at 1; version 1 has no `previous` and every later version has one:
// `version = 1, previous = X`, `version = 2` (alone) and `version = 0` are rejected.
fn check_version_chain(cx: &Ctxt, event: &Event) {
    let version_span = || {
        event
            .version_lit
            .as_ref()
            .map_or_else(|| event.ident.to_token_stream(), ToTokens::to_token_stream)
    };
    match (event.version, &event.previous) {
        (0, _) => cx.error_spanned_by(
            version_span(),
            "event versions start at 1: `version = 1` is the first shape of an event",
        ),
        (1, Some(previous)) => cx.error_spanned_by(
            previous,
            "version 1 is the first shape of an event and has no `previous`: remove `previous`, or raise `version`",
        ),
        (version, None) if version > 1 && !event.previous_written => cx.error_spanned_by(
            version_span(),
            format!(
                "version {version} needs `previous = <the version {} type>` so that stored version {} payloads still decode",
                version - 1,
                version - 1
            ),
        ),
        _ => {}
    }
}

// An aggregate name is a stream category: lowercase ASCII letters, digits, `_` and `.`,
// starting with a letter. `-` separates the category from the id (`cart-42`), so
// `name = "shopping-cart"` and `name = "Cart"` are rejected.
fn check_aggregate_name(cx: &Ctxt, aggregate: &Aggregate) {
    let name = aggregate.name.value();
    let well_formed = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'));
    if !well_formed {
        cx.error_spanned_by(
            &aggregate.name,
            format!(
                "malformed aggregate name `{name}`: use lowercase ASCII letters, digits, `_` and `.`, starting with a letter (`-` separates the name from the id in stream names like `cart-42`)"
            ),
        );
    }
}

// An aggregate owns at least one event: `#[aggregate(commands(..))]` without `events(..)`, or
// with `events()`, is rejected.
fn check_events_listed(cx: &Ctxt, aggregate: &Aggregate) {
    match &aggregate.events {
        None if aggregate.events_written => {}
        None => cx.error_spanned_by(
            aggregate.ident,
            "missing `events(...)` in `#[aggregate(...)]`: list the events the aggregate records, e.g. `events(CartOpened, ItemAdded)`",
        ),
        Some(events) if events.items.is_empty() => {
            if let Some(key) = &events.key {
                cx.error_spanned_by(
                    key,
                    "`events(...)` is empty: an aggregate records at least one event",
                );
            }
        }
        Some(_) => {}
    }
}

// Each type appears once in a list and gives its own variant: `events(A, A)` and
// `events(a::Opened, b::Opened)` (both would be the variant `Opened`) are rejected.
fn check_listed_once(cx: &Ctxt, members: &Members, what: &str) {
    let mut seen = HashMap::new();
    for member in &members.items {
        let variant = member.variant.to_string();
        match seen.get(&variant) {
            None => {
                seen.insert(variant, &member.path);
            }
            Some(first) if first.to_token_stream().to_string() == member.path.to_token_stream().to_string() => {
                cx.error_spanned_by(&member.path, format!("{what} `{variant}` is listed twice"));
            }
            Some(_) => cx.error_spanned_by(
                &member.path,
                format!(
                    "two listed {what}s are named `{variant}`: each becomes a variant named after its type, so the names must differ"
                ),
            ),
        }
    }
}

// `snapshot(every = N)` needs `every`, and `N` is at least 1: `snapshot(every = 0)` and
// `snapshot()` are rejected (leave `snapshot` out to never snapshot).
fn check_snapshot(cx: &Ctxt, aggregate: &Aggregate) {
    let Some(snapshot) = &aggregate.snapshot else {
        return;
    };
    if let Some((lit, 0)) = &snapshot.every {
        cx.error_spanned_by(
            lit,
            "`snapshot(every = 0)` would never snapshot: use a positive number, or leave `snapshot` out",
        );
    }
    if snapshot.empty {
        cx.error_spanned_by(
            &snapshot.key,
            "`snapshot(...)` needs `every`: `snapshot(every = 100)`",
        );
    }
}
