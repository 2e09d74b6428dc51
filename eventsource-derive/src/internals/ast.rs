//! The derive inputs as the generators see them: attributes resolved to values (with their
//! defaults), still pointing at the user's tokens for error spans.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident};
use syn::{Data, DeriveInput, Ident, LitInt, LitStr, Path, Type, Visibility};

use crate::internals::attr::{self, List, Place, Snapshot};
use crate::internals::ctxt::Ctxt;
use crate::internals::fingerprint::local_text;

/// The name, version and version chain of one event: a struct deriving `Event`, or a variant
/// of an enum deriving `EventEnum`.
pub(crate) struct Versioned {
    /// The stored name: `name = "..."`, or the default (the struct's name; the prefix and the
    /// variant's name in snake case).
    pub(crate) name: LitStr,
    pub(crate) version: u32,
    /// The `version = N` literal, if written.
    pub(crate) version_lit: Option<LitInt>,
    pub(crate) previous: Option<Type>,
    /// Whether `previous` was written, even with an invalid value.
    pub(crate) previous_written: bool,
    /// `same_as = T`: another declaration of this very event version (same name, version and
    /// wire shape, checked), which the crate-wide uniqueness check then allows.
    pub(crate) same_as: Option<Type>,
}

impl Versioned {
    fn new(attrs: &mut attr::EventAttrs, default_name: impl FnOnce() -> LitStr) -> Self {
        let (version_lit, version) = match attrs.version.take() {
            Some((lit, version)) => (Some(lit), version),
            None => (None, 1),
        };
        Versioned {
            name: attrs.name.take().unwrap_or_else(default_name),
            version,
            version_lit,
            previous: attrs.previous.take(),
            previous_written: attrs.written.contains(&"previous"),
            same_as: attrs.same_as.take(),
        }
    }
}

/// A type deriving `Event`.
pub(crate) struct Event<'a> {
    pub(crate) input: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    pub(crate) event: Versioned,
    /// `lock = "..."`: the schema lock, relative to the source file (default: `events.lock` in
    /// the crate root).
    pub(crate) lock: Option<LitStr>,
    pub(crate) krate: Path,
    /// The fields marked `#[tag]`, in order.
    pub(crate) tags: Vec<attr::TagField>,
}

impl<'a> Event<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let mut attrs = attr::event_attrs(cx, &input.attrs, Place::Struct);
        let ident = &input.ident;
        let tags = match &input.data {
            Data::Struct(data) => attr::tag_fields(cx, &data.fields),
            Data::Enum(_) | Data::Union(_) => Vec::new(),
        };
        Event {
            input,
            ident,
            event: Versioned::new(&mut attrs, || LitStr::new(&ident.to_string(), ident.span())),
            lock: attrs.lock,
            krate: attrs.krate.unwrap_or_else(default_crate),
            tags,
        }
    }
}

/// An enum deriving `EventEnum`: each variant is an event.
pub(crate) struct EventEnum<'a> {
    pub(crate) input: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    /// `prefix = "..."`, put before each variant's default name.
    pub(crate) prefix: Option<LitStr>,
    pub(crate) variants: Vec<Variant<'a>>,
    /// As [`Event::lock`].
    pub(crate) lock: Option<LitStr>,
    pub(crate) krate: Path,
}

/// One variant of an event enum: one event.
pub(crate) struct Variant<'a> {
    pub(crate) variant: &'a syn::Variant,
    pub(crate) ident: &'a Ident,
    /// Its position in the enum, which serde also identifies it by.
    pub(crate) index: u32,
    pub(crate) event: Versioned,
    /// Whether `name = "..."` was written (otherwise the name comes from the prefix and the
    /// variant's name).
    pub(crate) name_written: bool,
}

impl<'a> EventEnum<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::event_attrs(cx, &input.attrs, Place::Enum);
        let prefix = attrs.prefix;
        let variants = match &input.data {
            Data::Enum(data) => data
                .variants
                .iter()
                .zip(0u32..)
                .map(|(variant, index)| {
                    let mut attrs = attr::event_attrs(cx, &variant.attrs, Place::Variant);
                    let name_written = attrs.name.is_some();
                    let ident = &variant.ident;
                    let default_name = || {
                        let prefix = prefix.as_ref().map(LitStr::value).unwrap_or_default();
                        let name = format!("{prefix}{}", snake_case(&ident.to_string()));
                        LitStr::new(&name, ident.span())
                    };
                    Variant {
                        variant,
                        ident,
                        index,
                        event: Versioned::new(&mut attrs, default_name),
                        name_written,
                    }
                })
                .collect(),
            Data::Struct(_) | Data::Union(_) => Vec::new(),
        };
        EventEnum {
            input,
            ident: &input.ident,
            prefix,
            variants,
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
    /// `events(...)` or `events = ...`; `None` when the key is missing or its value invalid.
    pub(crate) events: Option<Declared>,
    /// Whether `events` was written, even with an invalid value.
    pub(crate) events_written: bool,
    pub(crate) commands: Declared,
    /// `snapshot(every = N)`.
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) services: Option<Type>,
    /// `decision`: also implement `Decision`, each command's boundary from its
    /// `ConsistencyBoundary` impl.
    pub(crate) decision: Option<Path>,
    pub(crate) krate: Path,
    /// `<Name>Event`.
    pub(crate) event_enum: Ident,
    /// `<Name>Command`.
    pub(crate) command_enum: Ident,
    /// The state's canonical text (its deep fingerprint adds its fields' types' shapes).
    pub(crate) state_shape: String,
}

/// An aggregate's events or commands.
pub(crate) enum Declared {
    /// `events(A, B)`: each listed type becomes a variant of a generated enum.
    Listed(Members),
    /// `events = CartEvent`: an enum of the user's own.
    Enum(Type),
}

impl Declared {
    fn new(declared: attr::Declared) -> Self {
        match declared {
            attr::Declared::List(list) => Declared::Listed(members(list)),
            attr::Declared::Enum(ty) => Declared::Enum(ty),
        }
    }

    /// The listed types (none for a user's enum).
    pub(crate) fn members(&self) -> &[Member] {
        match self {
            Declared::Listed(members) => &members.items,
            Declared::Enum(_) => &[],
        }
    }
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
            events: attrs.events.map(Declared::new),
            commands: attrs.commands.map_or_else(
                || {
                    Declared::Listed(Members {
                        key: None,
                        items: Vec::new(),
                    })
                },
                Declared::new,
            ),
            snapshot: attrs.snapshot,
            services: attrs.services,
            decision: attrs.decision,
            krate: attrs.krate.unwrap_or_else(default_crate),
            event_enum: format_ident!("{}Event", ident),
            command_enum: format_ident!("{}Command", ident),
            state_shape: local_text(input),
        }
    }

    /// The listed events (none if `events(...)` is missing or names an enum).
    pub(crate) fn event_members(&self) -> &[Member] {
        self.events.as_ref().map_or(&[][..], Declared::members)
    }

    /// `Aggregate::Event`: the generated `<Name>Event`, or the user's enum.
    pub(crate) fn event_type(&self) -> TokenStream {
        match &self.events {
            Some(Declared::Enum(ty)) => ty.to_token_stream(),
            Some(Declared::Listed(_)) | None => self.event_enum.to_token_stream(),
        }
    }

    /// `Aggregate::Command`: the generated `<Name>Command`, or the user's enum.
    pub(crate) fn command_type(&self) -> TokenStream {
        match &self.commands {
            Declared::Enum(ty) => ty.to_token_stream(),
            Declared::Listed(_) => self.command_enum.to_token_stream(),
        }
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
