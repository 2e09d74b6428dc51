//! The derive inputs as the generators see them: attributes resolved to values (with their
//! defaults), still pointing at the user's tokens for error spans.

use proc_macro2::Span;
use quote::format_ident;
use syn::{DeriveInput, Ident, LitInt, LitStr, Path, Type, Visibility};

use crate::internals::attr::{self, List, Snapshot};
use crate::internals::ctxt::Ctxt;
use crate::internals::fingerprint::fingerprint;

/// A type deriving `Event`.
pub(crate) struct Event<'a> {
    pub(crate) input: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    /// The stored name: `name = "..."`, or the type's name.
    pub(crate) name: LitStr,
    pub(crate) version: u32,
    /// The `version = N` literal, if written.
    pub(crate) version_lit: Option<LitInt>,
    pub(crate) previous: Option<Type>,
    /// Whether `previous` was written, even with an invalid value.
    pub(crate) previous_written: bool,
    /// `lock = "..."`: the schema lock, relative to the source file (default: `events.lock` in
    /// the crate root).
    pub(crate) lock: Option<LitStr>,
    pub(crate) krate: Path,
}

impl<'a> Event<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::event_attrs(cx, &input.attrs);
        let (version_lit, version) = match attrs.version {
            Some((lit, version)) => (Some(lit), version),
            None => (None, 1),
        };
        Event {
            input,
            ident: &input.ident,
            name: attrs
                .name
                .unwrap_or_else(|| LitStr::new(&input.ident.to_string(), input.ident.span())),
            version,
            version_lit,
            previous_written: attrs.written.contains(&"previous"),
            previous: attrs.previous,
            lock: attrs.lock,
            krate: attrs.krate.unwrap_or_else(default_crate),
        }
    }
}

/// A type deriving `Aggregate`.
pub(crate) struct Aggregate<'a> {
    pub(crate) input: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    /// The stream category: `name = "..."`, or the type's name in snake case.
    pub(crate) name: LitStr,
    /// `error = T`, or `Infallible` when the aggregate never rejects a command.
    pub(crate) error: Option<Type>,
    /// `events(...)`; `None` when the key is missing or its value invalid.
    pub(crate) events: Option<Members>,
    /// Whether `events` was written, even with an invalid value.
    pub(crate) events_written: bool,
    pub(crate) commands: Members,
    /// `snapshot(every = N)`.
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) services: Option<Type>,
    pub(crate) krate: Path,
    /// `<Name>Event`.
    pub(crate) event_enum: Ident,
    /// `<Name>Command`.
    pub(crate) command_enum: Ident,
    pub(crate) state_fingerprint: String,
}

/// The types listed in `events(...)` or `commands(...)`.
pub(crate) struct Members {
    /// The key (`events`), for errors about the list as a whole.
    pub(crate) key: Option<Path>,
    pub(crate) items: Vec<Member>,
}

/// One listed type and the variant it becomes in the generated enum.
pub(crate) struct Member {
    pub(crate) path: Path,
    /// The type's own name: `Deposited` for `events::Deposited`.
    pub(crate) variant: Ident,
}

impl<'a> Aggregate<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::aggregate_attrs(cx, &input.attrs);
        let ident = &input.ident;
        Aggregate {
            input,
            ident,
            vis: &input.vis,
            name: attrs
                .name
                .unwrap_or_else(|| LitStr::new(&snake_case(&ident.to_string()), ident.span())),
            error: attrs.error,
            events_written: attrs.written.contains(&"events"),
            events: attrs.events.map(members),
            commands: attrs.commands.map_or_else(
                || Members {
                    key: None,
                    items: Vec::new(),
                },
                members,
            ),
            snapshot: attrs.snapshot,
            services: attrs.services,
            krate: attrs.krate.unwrap_or_else(default_crate),
            event_enum: format_ident!("{}Event", ident),
            command_enum: format_ident!("{}Command", ident),
            state_fingerprint: fingerprint(input),
        }
    }

    /// The listed events (none if `events(...)` is missing).
    pub(crate) fn event_members(&self) -> &[Member] {
        self.events
            .as_ref()
            .map_or(&[][..], |events| &events.items[..])
    }
}

fn members(list: List) -> Members {
    let items = list
        .items
        .into_iter()
        .filter_map(|path| {
            let variant = path.segments.last()?.ident.clone();
            Some(Member { path, variant })
        })
        .collect();
    Members {
        key: Some(list.key),
        items,
    }
}

/// `::eventsource`, the facade crate, unless `crate = "..."` says otherwise.
fn default_crate() -> Path {
    let ident = Ident::new("eventsource", Span::call_site());
    let mut path = Path::from(ident);
    path.leading_colon = Some(Default::default());
    path
}

/// `BankAccount` → `bank_account`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if c.is_uppercase() {
            if previous_lower {
                out.push('_');
            }
            out.extend(c.to_lowercase());
            previous_lower = false;
        } else {
            out.push(c);
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    out
}
