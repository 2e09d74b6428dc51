//! Crate-wide uniqueness without a registry: each event version and each aggregate name
//! defines a `#[macro_export]` macro named after it. Exported macros live in one namespace,
//! the crate root's, so two items with one (name, version), or two aggregates with one name,
//! anywhere in a crate define one macro twice: a compile error (E0428) pointing at both
//! names. A proc macro sees one item at a time; the compiler's name resolution sees them all.
//! Across crates nothing collides (each crate has its own root), which is what the schema lock
//! (per crate section) covers.

use proc_macro2::{Span, TokenStream};
use quote::quote_spanned;
use syn::spanned::Spanned;
use syn::{Ident, LitStr};

use crate::internals::ast::Versioned;

use crate::internals::fingerprint::hash;

/// The marker of event `name` at `version`, spanned at the name.
pub(crate) fn event_marker(name: &LitStr, version: u32) -> TokenStream {
    let value = name.value();
    let ident = marker_ident(
        &format!("event_{}_v{version}", sanitize(&value)),
        &format!("{value}\u{0}{version}"),
        name.span(),
    );
    let doc = format!(
        "Marks event `{value}` v{version} as declared once in this crate (a second declaration is a compile error)."
    );
    marker(&ident, &doc, name.span())
}

/// The marker of aggregate `name`, spanned at the name.
pub(crate) fn aggregate_marker(name: &LitStr) -> TokenStream {
    let value = name.value();
    let ident = marker_ident(
        &format!("aggregate_{}", sanitize(&value)),
        &value,
        name.span(),
    );
    let doc = format!(
        "Marks aggregate `{value}` as declared once in this crate (its streams are `{value}-<id>`; a second aggregate of that name is a compile error)."
    );
    marker(&ident, &doc, name.span())
}

/// Spanned at the name, which the error then points at (both declarations).
fn marker(ident: &Ident, doc: &str, span: Span) -> TokenStream {
    quote_spanned! {span=>
        #[doc = #doc]
        #[doc(hidden)]
        #[allow(non_local_definitions, unused_macros)]
        #[macro_export]
        macro_rules! #ident { () => {}; }
    }
}

/// `__eventsource_<readable>_declared_twice_<hash>`: readable in the error, and unique per
/// exact name (`a.b` and `a_b` read alike but hash apart).
fn marker_ident(readable: &str, exact: &str, span: Span) -> Ident {
    let digest = hash(exact);
    Ident::new(
        &format!("__eventsource_{readable}_declared_twice_{}", &digest[..8]),
        span,
    )
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The marker of one event version, or with `same_as = T`, the checks that it is `T`'s exact
/// twin: the same name, version and deep shape (`deep`, the declaration's own fingerprint).
pub(crate) fn event_version(
    private: &TokenStream,
    event: &Versioned,
    subject: &str,
    deep: &TokenStream,
) -> TokenStream {
    let Some(twin) = &event.same_as else {
        return event_marker(&event.name, event.version);
    };
    let (name, version) = (&event.name, event.version);
    let twin_text = crate::event::text(twin);
    let same_key = crate::event::literal_message(format!(
        "{subject} says `same_as = {twin_text}`, but `{twin_text}` is not `{}` v{version}: a twin has the same name and version",
        name.value()
    ));
    let same_shape = crate::event::literal_message(format!(
        "{subject} says `same_as = {twin_text}`, but their wire shapes differ (deep fingerprints, nested types included): a twin decodes the same payloads"
    ));
    quote_spanned! {twin.span()=>
        const _: () = ::core::assert!(
            #private::str_eq(<#twin as #private::Event>::NAME, #name)
                && <#twin as #private::Event>::VERSION == #version,
            #same_key
        );
        const _: () = ::core::assert!(
            <#twin as #private::Shape>::SHAPE_FINGERPRINT == #deep,
            #same_shape
        );
    }
}
