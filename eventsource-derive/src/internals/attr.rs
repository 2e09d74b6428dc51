//! Reads `#[event(...)]` and `#[aggregate(...)]` into typed values.
//!
//! Parsing recovers from a bad key or value: the error is recorded in the [`Ctxt`], the value is
//! skipped up to the next `,`, and the other keys are still read, so that one mistake neither
//! hides the next nor leaves the rest of the input unparsed.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, LitInt, LitStr, Path, Token, Type};

use crate::internals::ctxt::Ctxt;

/// `#[event(...)]`.
pub(crate) const EVENT: &str = "event";
/// `#[aggregate(...)]`.
pub(crate) const AGGREGATE: &str = "aggregate";

/// Where a key is written, as error messages name it.
const IN_EVENT: &str = "`#[event(...)]`";
const IN_AGGREGATE: &str = "`#[aggregate(...)]`";
const IN_SNAPSHOT: &str = "`snapshot(...)`";

const EVENT_KEYS: &[&str] = &["name", "version", "previous", "same_as", "lock", "crate"];
const EVENT_ENUM_KEYS: &[&str] = &["prefix", "lock", "crate"];
const VARIANT_KEYS: &[&str] = &["name", "version", "previous", "same_as"];
const AGGREGATE_KEYS: &[&str] = &[
    "name", "error", "events", "commands", "snapshot", "services", "decision", "crate",
];
const SNAPSHOT_KEYS: &[&str] = &["every", "version"];
const SHAPE_KEYS: &[&str] = &["lock", "crate"];
/// `#[shape(...)]`.
pub(crate) const SHAPE: &str = "shape";
/// `#[tag]` or `#[tag(key = "...")]` on a field of an event.
pub(crate) const TAG: &str = "tag";
const IN_TAG: &str = "`#[tag(...)]`";
const TAG_KEYS: &[&str] = &["key"];
const IN_SHAPE: &str = "`#[shape(...)]`";

/// Where an `#[event(...)]` attribute is written: each place has its own keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// On a struct deriving `Event`.
    Struct,
    /// On an enum deriving `EventEnum`.
    Enum,
    /// On a variant of such an enum.
    Variant,
}

impl Place {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Place::Struct => EVENT_KEYS,
            Place::Enum => EVENT_ENUM_KEYS,
            Place::Variant => VARIANT_KEYS,
        }
    }

    /// Where a key that belongs elsewhere goes, for the message.
    fn elsewhere(self, key: &str) -> Option<&'static str> {
        match self {
            Place::Struct if key == "prefix" => Some(
                "`prefix` is for an enum of events (`#[derive(EventEnum)]`); a struct event gives its whole name: `name = \"cart.item_added\"`",
            ),
            Place::Enum if VARIANT_KEYS.contains(&key) => Some(
                "each variant is its own event: write `name`, `version` and `previous` on the variant, e.g. `#[event(version = 2, previous = ItemAddedV1)] ItemAdded { .. }`",
            ),
            Place::Variant if EVENT_ENUM_KEYS.contains(&key) => Some(
                "`prefix`, `lock` and `crate` apply to the whole enum: write them in `#[event(...)]` on the enum",
            ),
            _ => None,
        }
    }
}

/// What `#[event(...)]` says (on a struct, an enum or a variant: see [`Place`]).
#[derive(Default)]
pub(crate) struct EventAttrs {
    /// The valid keys that were written, even if their value was invalid (so that a bad value
    /// is not also reported as a missing key).
    pub(crate) written: Vec<&'static str>,
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<(LitInt, u32)>,
    pub(crate) previous: Option<Type>,
    pub(crate) same_as: Option<Type>,
    pub(crate) prefix: Option<LitStr>,
    pub(crate) lock: Option<LitStr>,
    pub(crate) krate: Option<Path>,
}

/// What `#[aggregate(...)]` says.
#[derive(Default)]
pub(crate) struct AggregateAttrs {
    /// As [`EventAttrs::written`].
    pub(crate) written: Vec<&'static str>,
    pub(crate) name: Option<LitStr>,
    pub(crate) error: Option<Type>,
    pub(crate) events: Option<Declared>,
    pub(crate) commands: Option<Declared>,
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) services: Option<Type>,
    /// `decision`: the aggregate is a decision model, folded from a query across streams.
    pub(crate) decision: Option<Path>,
    pub(crate) krate: Option<Path>,
}

/// A parenthesized list of types: `events(Opened, Deposited)`.
pub(crate) struct List {
    /// The key, for errors about the list as a whole.
    pub(crate) key: Path,
    pub(crate) items: Vec<Path>,
}

/// How an aggregate declares its events or commands: a list of types, each becoming a variant
/// of a generated enum (`events(Opened, Deposited)`), or an enum of the user's own
/// (`events = AccountEvent`).
pub(crate) enum Declared {
    List(List),
    Enum(Type),
}

/// `snapshot(every = N)`.
pub(crate) struct Snapshot {
    pub(crate) key: Path,
    /// Whether nothing at all was written in the parentheses: `snapshot()`.
    pub(crate) empty: bool,
    pub(crate) every: Option<(LitInt, u64)>,
    /// `version = N`: the state's fingerprint is `version-N` instead of its shape's.
    pub(crate) version: Option<(LitInt, u32)>,
}

/// What `#[shape(...)]` says (on a type deriving `Shape`).
#[derive(Default)]
pub(crate) struct ShapeAttrs {
    pub(crate) lock: Option<LitStr>,
    pub(crate) krate: Option<Path>,
}

/// A field of an event marked `#[tag]`: each event carries the tag `<key>:<field value>`.
pub(crate) struct TagField {
    /// The field.
    pub(crate) member: syn::Member,
    /// The tag's key: `key = "..."`, or the field's name.
    pub(crate) key: LitStr,
}

/// Reads the `#[tag]` attributes on the fields of an event struct.
pub(crate) fn tag_fields(cx: &Ctxt, fields: &syn::Fields) -> Vec<TagField> {
    let mut out = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let mut seen: Option<&Attribute> = None;
        for attr in field.attrs.iter().filter(|attr| attr.path().is_ident(TAG)) {
            if seen.is_some() {
                cx.error_spanned_by(attr, "duplicate `#[tag]` on one field: a field is one tag");
                continue;
            }
            seen = Some(attr);
            // A tag is stored in plain text, in the event row and the tag index, and outlives
            // `forget`: personal data must not become one.
            if crate::internals::personal::is_personal_type(&field.ty)
                || field.attrs.iter().any(|a| a.path().is_ident("personal"))
            {
                let name = field
                    .ident
                    .as_ref()
                    .map_or_else(|| "this field".to_owned(), |i| format!("field `{i}`"));
                cx.error_spanned_by(
                    attr,
                    format!(
                        "{name} is personal data and cannot be a tag: tags are stored in plain text and outlive `forget`; tag a pseudonymous field instead (e.g. the subject's id)"
                    ),
                );
                continue;
            }
            let mut key: Option<LitStr> = None;
            if !matches!(attr.meta, syn::Meta::Path(_)) {
                let result = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("key") {
                        let example = "key = \"course\"";
                        key_eq(cx, &meta, &mut key, IN_TAG, example, |value| {
                            parse_str(cx, value, "key", example)
                        })
                    } else {
                        unknown_key(cx, &meta, IN_TAG, TAG_KEYS)
                    }
                });
                if let Err(error) = result {
                    cx.syn_error(error);
                }
            }
            let member = match &field.ident {
                Some(ident) => syn::Member::Named(ident.clone()),
                None => syn::Member::Unnamed(syn::Index {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    span: attr.span(),
                }),
            };
            let key = match (key, &field.ident) {
                (Some(key), _) => key,
                (None, Some(ident)) => {
                    let name = ident.to_string();
                    LitStr::new(name.strip_prefix("r#").unwrap_or(&name), ident.span())
                }
                (None, None) => {
                    cx.error_spanned_by(
                        attr,
                        "a tag on an unnamed field needs a key: `#[tag(key = \"course\")]`",
                    );
                    continue;
                }
            };
            out.push(TagField { member, key });
        }
    }
    out
}

/// Reads every `#[shape(...)]` attribute of the type.
pub(crate) fn shape_attrs(cx: &Ctxt, attrs: &[Attribute]) -> ShapeAttrs {
    let mut out = ShapeAttrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(SHAPE)) {
        let result = attr.parse_nested_meta(|meta| {
            let key = &meta.path;
            if key.is_ident("lock") {
                let example = "lock = \"events.lock\"";
                let slot = &mut out.lock;
                key_eq(cx, &meta, slot, IN_SHAPE, example, |value| {
                    parse_str(cx, value, "lock", example)
                })?;
            } else if key.is_ident("crate") {
                let example = "crate = \"eventsource\"";
                let slot = &mut out.krate;
                key_eq(cx, &meta, slot, IN_SHAPE, example, |value| {
                    parse_crate(cx, value)
                })?;
            } else {
                unknown_key(cx, &meta, IN_SHAPE, SHAPE_KEYS)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    out
}

/// Reads every `#[event(...)]` attribute of a type or variant written at `place`.
pub(crate) fn event_attrs(cx: &Ctxt, attrs: &[Attribute], place: Place) -> EventAttrs {
    let mut out = EventAttrs::default();
    let valid = place.keys();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(EVENT)) {
        let result = attr.parse_nested_meta(|meta| {
            let key = &meta.path;
            out.written
                .extend(valid.iter().filter(|k| key.is_ident(*k)));
            if !valid.iter().any(|k| key.is_ident(k)) {
                let hint = key
                    .get_ident()
                    .and_then(|k| place.elsewhere(&k.to_string()));
                match hint {
                    Some(hint) => {
                        let key_text = key.to_token_stream().to_string();
                        cx.error_spanned_by(key, format!("`{key_text}` is not a key here: {hint}"));
                        skip_value(meta.input)?;
                    }
                    None => unknown_key(cx, &meta, IN_EVENT, valid)?,
                }
            } else if key.is_ident("name") {
                let example = "name = \"cart.item_added\"";
                let slot = &mut out.name;
                key_eq(cx, &meta, slot, IN_EVENT, example, |value| {
                    parse_str(cx, value, "name", example)
                })?;
            } else if key.is_ident("version") {
                let example = "version = 2";
                let slot = &mut out.version;
                key_eq(cx, &meta, slot, IN_EVENT, example, |value| {
                    parse_int(cx, value, "version", example)
                })?;
            } else if key.is_ident("same_as") {
                let example = "same_as = ItemAdded";
                let slot = &mut out.same_as;
                key_eq(cx, &meta, slot, IN_EVENT, example, |value| {
                    parse_type(cx, value, "same_as", example)
                })?;
            } else if key.is_ident("previous") {
                let example = "previous = ItemAddedV1";
                let slot = &mut out.previous;
                key_eq(cx, &meta, slot, IN_EVENT, example, |value| {
                    parse_type(cx, value, "previous", example)
                })?;
            } else if key.is_ident("prefix") {
                let example = "prefix = \"cart.\"";
                let slot = &mut out.prefix;
                key_eq(cx, &meta, slot, IN_EVENT, example, |value| {
                    parse_str(cx, value, "prefix", example)
                })?;
            } else if key.is_ident("lock") {
                let example = "lock = \"events.lock\"";
                let slot = &mut out.lock;
                key_eq(cx, &meta, slot, IN_EVENT, example, |value| {
                    parse_str(cx, value, "lock", example)
                })?;
            } else if key.is_ident("crate") {
                let example = "crate = \"eventsource\"";
                let slot = &mut out.krate;
                key_eq(cx, &meta, slot, IN_EVENT, example, |value| {
                    parse_crate(cx, value)
                })?;
            } else {
                unknown_key(cx, &meta, IN_EVENT, valid)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    out
}

/// Reads every `#[aggregate(...)]` attribute of the type.
pub(crate) fn aggregate_attrs(cx: &Ctxt, attrs: &[Attribute]) -> AggregateAttrs {
    let mut out = AggregateAttrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(AGGREGATE)) {
        let result = attr.parse_nested_meta(|meta| {
            let key = &meta.path;
            out.written
                .extend(AGGREGATE_KEYS.iter().filter(|k| key.is_ident(*k)));
            if key.is_ident("name") {
                let example = "name = \"cart\"";
                let slot = &mut out.name;
                key_eq(cx, &meta, slot, IN_AGGREGATE, example, |value| {
                    parse_str(cx, value, "name", example)
                })?;
            } else if key.is_ident("error") {
                let example = "error = CartError";
                let slot = &mut out.error;
                key_eq(cx, &meta, slot, IN_AGGREGATE, example, |value| {
                    parse_type(cx, value, "error", example)
                })?;
            } else if key.is_ident("services") {
                let example = "services = Pricing";
                let slot = &mut out.services;
                key_eq(cx, &meta, slot, IN_AGGREGATE, example, |value| {
                    parse_type(cx, value, "services", example)
                })?;
            } else if key.is_ident("crate") {
                let example = "crate = \"eventsource\"";
                let slot = &mut out.krate;
                key_eq(cx, &meta, slot, IN_AGGREGATE, example, |value| {
                    parse_crate(cx, value)
                })?;
            } else if key.is_ident("events") {
                let examples = ("events(CartOpened, ItemAdded)", "events = CartEvent");
                let declared = parse_declared(cx, &meta, examples)?;
                set(cx, &mut out.events, key, IN_AGGREGATE, declared);
            } else if key.is_ident("commands") {
                let examples = ("commands(OpenCart, AddItem)", "commands = CartCommand");
                let declared = parse_declared(cx, &meta, examples)?;
                set(cx, &mut out.commands, key, IN_AGGREGATE, declared);
            } else if key.is_ident("snapshot") {
                let snapshot = parse_snapshot(cx, &meta)?;
                set(cx, &mut out.snapshot, key, IN_AGGREGATE, snapshot);
            } else if key.is_ident("decision") {
                // A flag: `decision`, nothing after it.
                if meta.input.is_empty() || meta.input.peek(Token![,]) {
                    set(cx, &mut out.decision, key, IN_AGGREGATE, Some(key.clone()));
                } else {
                    cx.error_spanned_by(
                        key,
                        "`decision` is a flag and takes no value: `#[aggregate(..., decision)]`",
                    );
                    skip_value(meta.input)?;
                }
            } else {
                unknown_key(cx, &meta, IN_AGGREGATE, AGGREGATE_KEYS)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    out
}

/// The keys written in the `#[serde(...)]` attributes among `attrs` (values skipped). A
/// malformed `serde` attribute yields what was read before the mistake: serde reports it.
pub(crate) fn serde_keys(attrs: &[Attribute]) -> Vec<Path> {
    let mut keys = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            keys.push(meta.path.clone());
            skip_value(meta.input)
        });
    }
    keys
}

/// `key = value`: reads the value with `parse` (which reports a bad one) and stores it, or
/// reports the key as a duplicate. `example` shows the key's form in messages.
fn key_eq<T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    slot: &mut Option<T>,
    within: &str,
    example: &str,
    parse: impl FnOnce(TokenStream) -> Option<T>,
) -> syn::Result<()> {
    if let Some(value) = key_value(cx, meta, example)? {
        set(cx, slot, &meta.path, within, parse(value));
    }
    Ok(())
}

/// Stores a key's value, or reports the key as a duplicate (at its second occurrence).
fn set<T>(cx: &Ctxt, slot: &mut Option<T>, key: &Path, within: &str, value: Option<T>) {
    if slot.is_some() {
        cx.error_spanned_by(
            key,
            format!("duplicate key `{}` in {within}", key.to_token_stream()),
        );
    } else if value.is_some() {
        *slot = value;
    }
}

fn unknown_key(cx: &Ctxt, meta: &ParseNestedMeta, within: &str, valid: &[&str]) -> syn::Result<()> {
    let valid = match valid {
        [only] => format!("the only valid key is `{only}`"),
        _ => {
            let keys = valid.iter().map(|key| format!("`{key}`"));
            format!("valid keys are {}", keys.collect::<Vec<_>>().join(", "))
        }
    };
    cx.error_spanned_by(
        &meta.path,
        format!(
            "unknown key `{}` in {within}; {valid}",
            meta.path.to_token_stream().to_string().replace(' ', "")
        ),
    );
    skip_value(meta.input)
}

/// The tokens after `key =`, up to the next `,`. `None` (with the error recorded) if the key is
/// not followed by `=` or by a value.
fn key_value(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<TokenStream>> {
    let key = meta.path.to_token_stream();
    if !meta.input.peek(Token![=]) {
        cx.error_spanned_by(&meta.path, format!("expected a value: `{example}`"));
        skip_value(meta.input)?;
        return Ok(None);
    }
    let eq: Token![=] = meta.input.parse()?;
    let value = rest_of_value(meta.input)?;
    if value.is_empty() {
        cx.error_spanned_by(
            quote::quote!(#key #eq),
            format!("expected a value after `=`: `{example}`"),
        );
        return Ok(None);
    }
    Ok(Some(value))
}

/// Consumes whatever follows a key (`= value` or `(...)`) up to the next `,`.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    rest_of_value(input).map(drop)
}

fn rest_of_value(input: ParseStream) -> syn::Result<TokenStream> {
    let mut tokens = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    Ok(tokens)
}

fn parse_str(cx: &Ctxt, value: TokenStream, key: &str, example: &str) -> Option<LitStr> {
    match syn::parse2::<LitStr>(value.clone()) {
        Ok(lit) => Some(lit),
        Err(_) => {
            cx.error_spanned_by(
                value,
                format!("`{key}` expects a string literal: `{example}`"),
            );
            None
        }
    }
}

fn parse_int<N>(cx: &Ctxt, value: TokenStream, key: &str, example: &str) -> Option<(LitInt, N)>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    let parsed = syn::parse2::<LitInt>(value.clone())
        .ok()
        .and_then(|lit| lit.base10_parse::<N>().ok().map(|n| (lit, n)));
    if parsed.is_none() {
        cx.error_spanned_by(
            value,
            format!(
                "`{key}` expects a non-negative integer of type `{}`: `{example}`",
                std::any::type_name::<N>()
            ),
        );
    }
    parsed
}

fn parse_type(cx: &Ctxt, value: TokenStream, key: &str, example: &str) -> Option<Type> {
    if let Ok(lit) = syn::parse2::<LitStr>(value.clone()) {
        cx.error_spanned_by(
            lit,
            format!("`{key}` expects a type, not a string: `{example}`"),
        );
        return None;
    }
    match syn::parse2::<Type>(value.clone()) {
        Ok(ty) => Some(ty),
        Err(_) => {
            cx.error_spanned_by(value, format!("`{key}` expects a type: `{example}`"));
            None
        }
    }
}

fn parse_crate(cx: &Ctxt, value: TokenStream) -> Option<Path> {
    let path = syn::parse2::<LitStr>(value.clone())
        .ok()
        .and_then(|lit| lit.parse_with(Path::parse_mod_style).ok());
    if path.is_none() {
        cx.error_spanned_by(
            value,
            "`crate` expects the path of the eventsource crate as a string: `crate = \"eventsource\"`",
        );
    }
    path
}

/// `key(A, B, ...)` or `key = Enum`; the examples show each form.
fn parse_declared(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    (list_example, enum_example): (&str, &str),
) -> syn::Result<Option<Declared>> {
    if !meta.input.peek(Token![=]) {
        let example = format!("{list_example}` or `{enum_example}");
        return Ok(parse_list(cx, meta, &example)?.map(Declared::List));
    }
    let Some(value) = key_value(cx, meta, enum_example)? else {
        return Ok(None);
    };
    let key = meta.path.to_token_stream().to_string();
    Ok(parse_type(cx, value, &key, enum_example).map(Declared::Enum))
}

/// `key(A, B, ...)`: a parenthesized list of type paths.
fn parse_list(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<List>> {
    if !meta.input.peek(syn::token::Paren) {
        cx.error_spanned_by(&meta.path, format!("expected a list of types: `{example}`"));
        skip_value(meta.input)?;
        return Ok(None);
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let tokens: TokenStream = content.parse()?;
    let parser = Punctuated::<Path, Token![,]>::parse_terminated;
    match parser.parse2(tokens.clone()) {
        Ok(items) => Ok(Some(List {
            key: meta.path.clone(),
            items: items.into_iter().collect(),
        })),
        Err(error) => {
            cx.syn_error(syn::Error::new(
                error.span(),
                format!("expected a comma-separated list of type names: `{example}`"),
            ));
            Ok(None)
        }
    }
}

/// `snapshot(every = N)`.
fn parse_snapshot(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Snapshot>> {
    if !meta.input.peek(syn::token::Paren) {
        cx.error_spanned_by(&meta.path, "expected `snapshot(every = 100)`");
        skip_value(meta.input)?;
        return Ok(None);
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let tokens: TokenStream = content.parse()?;
    let empty = tokens.is_empty();
    let mut every = None;
    let mut version = None;
    // `syn::meta::parser` rejects empty input; `snapshot()` is reported by the checks instead.
    if !empty {
        let parser = syn::meta::parser(|inner| {
            let key = &inner.path;
            if key.is_ident("every") {
                if let Some(value) = key_value(cx, &inner, "every = 100")? {
                    let every_value = parse_int(cx, value, "every", "every = 100");
                    set(cx, &mut every, key, IN_SNAPSHOT, every_value);
                }
            } else if key.is_ident("version") {
                if let Some(value) = key_value(cx, &inner, "version = 2")? {
                    let version_value = parse_int(cx, value, "version", "version = 2");
                    set(cx, &mut version, key, IN_SNAPSHOT, version_value);
                }
            } else {
                unknown_key(cx, &inner, IN_SNAPSHOT, SNAPSHOT_KEYS)?;
            }
            Ok(())
        });
        if let Err(error) = parser.parse2(tokens) {
            cx.syn_error(error);
        }
    }
    Ok(Some(Snapshot {
        key: meta.path.clone(),
        empty,
        every,
        version,
    }))
}
