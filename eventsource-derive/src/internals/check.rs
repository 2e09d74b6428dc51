//! Rules across attributes and the input's shape, one `check_*` function each.
//!
//! Rules that need other types' constants (an event's `previous` has the same name and is one
//! version lower; an aggregate's listed events have distinct names) cannot be decided here: the
//! generators emit them as `const` assertions instead. The names of an event enum's variants
//! are all in its own input, so they are checked here.

use std::collections::HashMap;

use quote::ToTokens;
use syn::{Data, DeriveInput, Ident, LitStr};

use crate::internals::ast::{Aggregate, Declared, Event, EventEnum, Members, Versioned};
use crate::internals::attr;
use crate::internals::ctxt::Ctxt;

/// Every check of `#[derive(Event)]`.
pub(crate) fn event(cx: &Ctxt, event: &Event) {
    check_shape(
        cx,
        event.input,
        "Event",
        "an event is one fact with one shape",
    );
    check_event_name(cx, &event.event.name);
    check_version_chain(cx, &event.event, event.ident);
    if let Data::Struct(data) = &event.input.data {
        check_no_field_attrs(cx, &data.fields, "the struct");
    }
    check_tag_keys(cx, event);
}

// A tag key is the part before the `:` of every tag the field makes, so it is not empty and
// holds no control character (the store refuses such tags): `#[tag(key = "")]` is rejected.
fn check_tag_keys(cx: &Ctxt, event: &Event) {
    for tag in &event.tags {
        let key = tag.key.value();
        if key.is_empty() {
            cx.error_spanned_by(
                &tag.key,
                "a tag key is not empty: `#[tag(key = \"course\")]`",
            );
        } else if key.chars().any(char::is_control) {
            cx.error_spanned_by(&tag.key, "a tag key holds no control characters");
        }
    }
}

/// Every check of `#[derive(EventEnum)]`.
pub(crate) fn event_enum(cx: &Ctxt, events: &EventEnum) {
    check_enum_shape(cx, events);
    let prefix_ok = check_prefix(cx, events);
    for variant in &events.variants {
        // A malformed prefix is reported once, not again in every name made from it.
        if prefix_ok || variant.name_written {
            check_event_name(cx, &variant.event.name);
        }
        check_version_chain(cx, &variant.event, variant.ident);
    }
    check_distinct_variant_names(cx, events);
    check_serde_representation(cx, events);
    for variant in &events.variants {
        check_no_field_attrs(cx, &variant.variant.fields, "the variant");
    }
}

// `#[event(...)]` describes a whole event, so it is not written on a field (where it would be
// ignored): `struct Opened { #[event(name = "x")] owner: String }` is rejected.
fn check_no_field_attrs(cx: &Ctxt, fields: &syn::Fields, owner: &str) {
    let attrs = fields.iter().flat_map(|field| &field.attrs);
    for attr in attrs.filter(|attr| attr.path().is_ident(attr::EVENT)) {
        cx.error_spanned_by(
            attr,
            format!("`#[event(...)]` describes a whole event: write it on {owner}, not on a field"),
        );
    }
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
    if let Some(Declared::Listed(events)) = &aggregate.events {
        check_listed_once(cx, events, "event");
    }
    if let Declared::Listed(commands) = &aggregate.commands {
        check_listed_once(cx, commands, "command");
    }
    check_snapshot(cx, aggregate);
}

// Only non-generic structs can be derived on: `enum Cart {..}`, `union U {..}` and
// `struct Cart<T>` are rejected (a stored shape must be one concrete type). An enum of events
// derives `EventEnum` instead, which the message says.
fn check_shape(cx: &Ctxt, input: &DeriveInput, derive: &str, why: &str) {
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(data) if derive == "Event" => cx.error_spanned_by(
            data.enum_token,
            "`#[derive(Event)]` is for a struct: for an enum whose variants are events, derive `EventEnum` (each variant gets its own `#[event(name = \"...\", version = N)]`)",
        ),
        Data::Enum(data) => cx.error_spanned_by(
            data.enum_token,
            format!("`#[derive({derive})]` supports structs only, not enums: {why}"),
        ),
        Data::Union(data) => cx.error_spanned_by(
            data.union_token,
            format!("`#[derive({derive})]` supports structs only, not unions: {why}"),
        ),
    }
    check_not_generic(cx, input, derive);
}

fn check_not_generic(cx: &Ctxt, input: &DeriveInput, derive: &str) {
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &input.generics,
            format!(
                "`#[derive({derive})]` does not support generic types: a stored shape must be one concrete type"
            ),
        );
    }
}

// `EventEnum` is derived on a non-generic enum with at least one variant: `struct Opened {..}`
// (derive `Event`), `union U {..}`, `enum CartEvent<T> {..}` and `enum CartEvent {}` are
// rejected.
fn check_enum_shape(cx: &Ctxt, events: &EventEnum) {
    match &events.input.data {
        Data::Enum(data) if data.variants.is_empty() => cx.error_spanned_by(
            events.ident,
            "an event enum needs at least one variant: each variant is an event",
        ),
        Data::Enum(_) => {}
        Data::Struct(data) => cx.error_spanned_by(
            data.struct_token,
            "`#[derive(EventEnum)]` is for an enum whose variants are events: for a struct, derive `Event`",
        ),
        Data::Union(data) => cx.error_spanned_by(
            data.union_token,
            "`#[derive(EventEnum)]` is for an enum whose variants are events, not a union",
        ),
    }
    check_not_generic(cx, events.input, "EventEnum");
}

// A prefix is the start of a well-formed event name: ASCII letters, digits, `_`, `.` and `-`,
// starting with a letter. `prefix = "cart."` is accepted; `prefix = ""` (leave it out) and
// `prefix = "my cart/"` are rejected. Returns whether the prefix (if any) is well formed.
fn check_prefix(cx: &Ctxt, events: &EventEnum) -> bool {
    let Some(prefix) = &events.prefix else {
        return true;
    };
    let text = prefix.value();
    if text.is_empty() {
        cx.error_spanned_by(
            prefix,
            "`prefix` is empty: leave it out, or give the names' common start, e.g. `prefix = \"cart.\"`",
        );
        return false;
    }
    if !well_formed_name(&text) {
        cx.error_spanned_by(
            prefix,
            format!(
                "malformed prefix `{text}`: event names use ASCII letters, digits, `_`, `.` and `-`, starting with a letter, e.g. `prefix = \"cart.\"`"
            ),
        );
        return false;
    }
    true
}

// Each variant is its own event, so no two variants of an enum have the same name:
// `#[event(name = "cart.opened")] Opened, #[event(name = "cart.opened")] Reopened` is rejected
// (older versions of an event are `previous` structs, not more variants).
fn check_distinct_variant_names(cx: &Ctxt, events: &EventEnum) {
    let mut seen = HashMap::new();
    for variant in &events.variants {
        let name = variant.event.name.value();
        match seen.get(&name) {
            None => {
                seen.insert(name, variant.ident);
            }
            Some(first) => cx.error_spanned_by(
                &variant.event.name,
                format!(
                    "variants `{first}` and `{}` have the same event name `{name}`: each variant is its own event with its own name (an older version of an event is a struct named in `previous`, not another variant)",
                    variant.ident
                ),
            ),
        }
    }
}

/// `serde` keys of the enum that change how its variants are represented.
const SERDE_ENUM_KEYS: &[&str] = &[
    "tag",
    "content",
    "untagged",
    "transparent",
    "from",
    "try_from",
    "into",
    "remote",
    "variant_identifier",
    "field_identifier",
];
/// `serde` keys of a variant that make it not an event that both encodes and decodes.
const SERDE_VARIANT_KEYS: &[&str] = &[
    "skip",
    "skip_serializing",
    "skip_deserializing",
    "other",
    "untagged",
    "with",
    "serialize_with",
    "deserialize_with",
];

// Each variant is stored as the equivalent struct, which needs serde's default (externally
// tagged) representation of the enum, every variant serializable and deserializable by its
// own fields: `#[serde(tag = "type")]`, `untagged`, `into = ..` on the enum and
// `#[serde(skip)]`, `other`, `with = ..` on a variant are rejected. Field attributes,
// `rename_all_fields` and variant renames are fine (the stored name is the event's).
fn check_serde_representation(cx: &Ctxt, events: &EventEnum) {
    reject_serde_keys(cx, &events.input.attrs, SERDE_ENUM_KEYS, |key| {
        format!(
            "`#[serde({key})]` changes how the enum is serialized: each variant of an event enum is stored as its own event, which needs serde's default enum representation (the stored name says which variant it is)"
        )
    });
    for variant in &events.variants {
        reject_serde_keys(cx, &variant.variant.attrs, SERDE_VARIANT_KEYS, |key| {
            format!(
                "`#[serde({key})]` on variant `{}`: each variant of an event enum is an event that is stored and read back by its own fields",
                variant.ident
            )
        });
    }
}

/// Reports each of the `rejected` keys written in the `serde` attributes among `attrs`.
fn reject_serde_keys(
    cx: &Ctxt,
    attrs: &[syn::Attribute],
    rejected: &[&str],
    message: impl Fn(&str) -> String,
) {
    for key in attr::serde_keys(attrs) {
        if rejected.iter().any(|k| key.is_ident(k)) {
            cx.error_spanned_by(&key, message(&key.to_token_stream().to_string()));
        }
    }
}

// An event name is non-empty, starts with an ASCII letter and uses only ASCII letters, digits,
// `_`, `.` and `-`: `name = "cart.item_added"`, not `name = ""` or `name = "item added!"`.
fn check_event_name(cx: &Ctxt, name_lit: &LitStr) {
    let name = name_lit.value();
    if name.is_empty() {
        cx.error_spanned_by(
            name_lit,
            "event name is empty: name the fact, e.g. `name = \"cart.item_added\"`",
        );
        return;
    }
    if !well_formed_name(&name) {
        cx.error_spanned_by(
            name_lit,
            format!(
                "malformed event name `{name}`: use ASCII letters, digits, `_`, `.` and `-`, starting with a letter, e.g. `cart.item_added`"
            ),
        );
    }
}

fn well_formed_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

// Versions start at 1; version 1 has no `previous` and every later version has one:
// `version = 1, previous = X`, `version = 2` (alone) and `version = 0` are rejected (on a
// struct event and on each variant of an event enum alike).
fn check_version_chain(cx: &Ctxt, event: &Versioned, ident: &Ident) {
    let version_span = || {
        event
            .version_lit
            .as_ref()
            .map_or_else(|| ident.to_token_stream(), ToTokens::to_token_stream)
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

/// Reports an attribute whose name is a near miss of `expected` (`#[aggregates(...)]`,
/// `#[Aggregate(...)]`), when no `#[<expected>(...)]` is written: the derive would otherwise
/// see no attribute at all and report what is missing from it. Returns whether it did.
fn misspelled_attribute(cx: &Ctxt, input: &DeriveInput, expected: &str) -> bool {
    if input
        .attrs
        .iter()
        .any(|attr| attr.path().is_ident(expected))
    {
        return false;
    }
    let near = input.attrs.iter().find(|attr| {
        attr.path().get_ident().is_some_and(|ident| {
            let name = ident.to_string().to_lowercase();
            name != expected && edit_distance(&name, expected) <= 2
        })
    });
    let Some(attr) = near else {
        return false;
    };
    cx.error_spanned_by(
        attr.path(),
        format!(
            "`#[{}(...)]` is not an attribute of this derive: write `#[{expected}(...)]`",
            attr.path().to_token_stream()
        ),
    );
    true
}

/// Levenshtein distance (short names only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

// An aggregate owns at least one event: `#[aggregate(commands(..))]` without `events(..)`, or
// with `events()`, is rejected.
fn check_events_listed(cx: &Ctxt, aggregate: &Aggregate) {
    match &aggregate.events {
        None if aggregate.events_written => {}
        None if misspelled_attribute(cx, aggregate.input, attr::AGGREGATE) => {}
        None => cx.error_spanned_by(
            aggregate.ident,
            "missing `events(...)` in `#[aggregate(...)]`: list the events the aggregate records, e.g. `events(CartOpened, ItemAdded)`, or name an enum of them, `events = CartEvent`",
        ),
        Some(Declared::Enum(..)) => {}
        Some(Declared::Listed(events)) if events.items.is_empty() => {
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
