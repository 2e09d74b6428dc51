//! `#[derive(Event)]`: the name, version and shape constants, the decoding through the upcaster
//! chain, and the schema lock check.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::internals::fingerprint::{Shape, hash};
use crate::internals::{ast, check, ctxt::Ctxt, lock, personal};

/// `source_file` is the file the type is defined in, which `lock = "..."` is relative to.
pub(crate) fn expand(input: &DeriveInput, source_file: Option<&Path>) -> TokenStream {
    let cx = Ctxt::new();
    let event = ast::Event::from_syn(&cx, input);
    check::event(&cx, &event);
    let personal = personal::fields(&cx, input);
    let lock_attr = lock::LockAttr {
        path: event.lock.as_ref(),
        ident: event.ident,
        source_file,
    };
    let track_lock = lock::check(&cx, &lock_attr, &[subject(&event)]);
    cx.finish(
        || {
            let generated = generate(&event, &personal);
            quote!(#generated const _: () = { #track_lock };)
        },
        || stub(&event),
    )
}

/// The lock's view of the event.
fn subject<'a>(event: &ast::Event<'a>) -> lock::Subject<'a> {
    let fields = match &event.input.data {
        syn::Data::Struct(data) => &data.fields,
        syn::Data::Enum(_) | syn::Data::Union(_) => &syn::Fields::Unit,
    };
    lock::Subject {
        name: event.event.name.value(),
        version: event.event.version,
        ident: event.ident,
        attrs: serde_attrs(&event.input.attrs),
        fields,
        shape: Shape::of(event.input),
        ty: event.ident.to_string(),
        is_variant: false,
    }
}

/// The `#[serde(...)]` attributes among `attrs`.
pub(crate) fn serde_attrs(attrs: &[syn::Attribute]) -> Vec<&syn::Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
        .collect()
}

fn generate(event: &ast::Event, personal: &[personal::PersonalField]) -> TokenStream {
    let ident = event.ident;
    let private = private(event);
    let name = &event.event.name;
    let version = event.event.version;
    let shape = Shape::of(event.input).to_string();
    let fingerprint = hash(&shape);
    let older_schemas = event.event.previous.as_ref().map(|previous| {
        quote_spanned!(previous.span()=> schemas.extend(<#previous as #private::Event>::version_schemas());)
    });
    let (decode, chain_checks) = match &event.event.previous {
        None => (
            quote!(#private::decode_first::<Self>(version, payload)),
            TokenStream::new(),
        ),
        Some(previous) => (
            quote_spanned!(previous.span()=> #private::decode_upcast::<#previous, Self>(version, payload)),
            chain_checks(
                &private,
                &event.event,
                &format!("`{ident}`"),
                &quote!(#ident),
            ),
        ),
    };
    let shape_impl = crate::shape::shape_impl(&private, event.input, &shape);
    let marker = crate::internals::unique::event_version(
        &private,
        &event.event,
        &format!("`{ident}`"),
        &quote!(<#ident as #private::Shape>::SHAPE_FINGERPRINT),
    );
    let personal_fields = (!personal.is_empty()).then(|| {
        let body = personal::personal_fields_body(&private, personal);
        quote! {
            fn personal_fields(&self, out: &mut ::std::vec::Vec<#private::PersonalField>) {
                #body
            }
        }
    });
    let tags = tags(event, &private);
    quote! {
        #marker
        const _: () = {
            #shape_impl
            #[automatically_derived]
            impl #private::Event for #ident {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
                const SHAPE: &'static str = #shape;
                const FINGERPRINT: &'static str = #fingerprint;

                fn decode_version(
                    version: u32,
                    payload: &#private::serde_json::Value,
                ) -> ::core::result::Result<Self, #private::DecodeFailure> {
                    #decode
                }

                // The same chain, straight from the text (`decode_first`/`decode_upcast` are
                // generic over the payload's form).
                fn decode_version_json(
                    version: u32,
                    payload: &str,
                ) -> ::core::result::Result<Self, #private::DecodeFailure> {
                    #decode
                }

                #personal_fields
                fn version_schemas() -> ::std::vec::Vec<#private::EventSchema> {
                    let mut schemas = ::std::vec![#private::EventSchema::new(
                        #name,
                        #version,
                        <Self as #private::Shape>::json_schema(),
                    )];
                    #older_schemas
                    schemas
                }
                #tags
            }
            #chain_checks
        };
    }
}

/// `fn tags` from the fields marked `#[tag]` (none: the trait's default), each field through
/// its `Display`, spanned at the field so that a field without one is reported there.
fn tags(event: &ast::Event, private: &TokenStream) -> TokenStream {
    if event.tags.is_empty() {
        return TokenStream::new();
    }
    let tags = event.tags.iter().map(|tag| {
        let member = &tag.member;
        let key = &tag.key;
        quote_spanned!(member.span()=> #private::Tag::new(#key, &self.#member))
    });
    quote! {
        fn tags(&self) -> ::std::vec::Vec<#private::Tag> {
            ::std::vec![#(#tags),*]
        }
    }
}

/// `const` assertions that the `previous` of `event` (described as `subject` in messages) has
/// the same name and is exactly one version lower: its constants belong to another type, so
/// only the compiler's const evaluation can compare them. And `SupersededBy<successor> for
/// previous`, which marks the previous version as retired for aggregates that list it
/// (`successor` is the type that decodes into the newer version: the event, or the enum of a
/// variant); generic over the successor, so it is allowed even when `previous` is another
/// crate's type.
pub(crate) fn chain_checks(
    private: &TokenStream,
    event: &ast::Versioned,
    subject: &str,
    successor: &TokenStream,
) -> TokenStream {
    let Some(previous) = &event.previous else {
        return TokenStream::new();
    };
    let span = previous.span();
    let previous_text = text(previous);
    let (name, version) = (&event.name, event.version);
    let expected = version.saturating_sub(1);
    let name_message = literal_message(format!(
        "`{previous_text}`, the `previous` of {subject}, has another event name than `{}`: a version chain keeps one name",
        name.value()
    ));
    let version_message = literal_message(format!(
        "`{previous_text}`, the `previous` of {subject} (version {version}), is not version {expected}: each step of a version chain is exactly one version lower"
    ));
    quote_spanned! {span=>
        const _: () = ::core::assert!(
            #private::str_eq(<#previous as #private::Event>::NAME, #name),
            #name_message
        );
        const _: () = ::core::assert!(
            <#previous as #private::Event>::VERSION == #expected,
            #version_message
        );
        #[automatically_derived]
        impl #private::SupersededBy<#successor> for #previous {}
    }
}

/// After an error: the impl with the declared constants, so that uses of the event elsewhere
/// do not add errors of their own.
fn stub(event: &ast::Event) -> TokenStream {
    if !event.input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let ident = event.ident;
    let private = private(event);
    let name = &event.event.name;
    let version = event.event.version;
    quote! {
        const _: () = {
            impl #private::Event for #ident {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
                fn decode_version(
                    _: u32,
                    _: &#private::serde_json::Value,
                ) -> ::core::result::Result<Self, #private::DecodeFailure> {
                    ::core::unimplemented!()
                }
            }
        };
    }
}

fn private(event: &ast::Event) -> TokenStream {
    let krate = &event.krate;
    quote!(#krate::__private)
}

/// Tokens as a user wrote them, for messages: `v1::ItemAdded`, not `v1 :: ItemAdded`.
pub(crate) fn text(tokens: impl ToTokens) -> String {
    tokens
        .to_token_stream()
        .to_string()
        .replace(" :: ", "::")
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
}

/// A panic message for `assert!` in a `const`: braces escaped, as it is a format string.
pub(crate) fn literal_message(message: String) -> String {
    message.replace('{', "{{").replace('}', "}}")
}
