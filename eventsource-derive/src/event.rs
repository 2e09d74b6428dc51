//! `#[derive(Event)]`: the name, version and shape constants, the decoding through the upcaster
//! chain, and the schema lock check.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::internals::fingerprint::{Shape, hash};
use crate::internals::{ast, check, ctxt::Ctxt, lock};

/// `source_file` is the file the type is defined in, which `lock = "..."` is relative to.
pub(crate) fn expand(input: &DeriveInput, source_file: Option<&Path>) -> TokenStream {
    let cx = Ctxt::new();
    let event = ast::Event::from_syn(&cx, input);
    check::event(&cx, &event);
    // The lock is consulted only for a well-formed event: a name or version with a mistake
    // would be checked (or recorded) under the wrong key.
    let track_lock = if cx.has_errors() {
        TokenStream::new()
    } else {
        lock::check(&cx, &event, source_file)
    };
    match cx.check() {
        Ok(()) => {
            let generated = generate(&event);
            quote!(#generated const _: () = { #track_lock };)
        }
        Err(error) => {
            let error = error.into_compile_error();
            let stub = stub(&event);
            quote!(#error #stub)
        }
    }
}

fn generate(event: &ast::Event) -> TokenStream {
    let ident = event.ident;
    let private = private(event);
    let name = &event.name;
    let version = event.version;
    let shape = Shape::of(event.input).to_string();
    let fingerprint = hash(&shape);
    let (decode, chain_checks) = match &event.previous {
        None => (
            quote!(#private::decode_first::<Self>(version, payload)),
            TokenStream::new(),
        ),
        Some(previous) => {
            let span = previous.span();
            let previous_text = text(previous);
            let expected = version - 1;
            let name_message = literal_message(format!(
                "`{previous_text}`, the `previous` of `{ident}`, has another event name than `{}`: a version chain keeps one name",
                name.value()
            ));
            let version_message = literal_message(format!(
                "`{previous_text}`, the `previous` of `{ident}` (version {version}), is not version {expected}: each step of a version chain is exactly one version lower"
            ));
            (
                quote_spanned!(span=> #private::decode_upcast::<#previous, Self>(version, payload)),
                quote_spanned! {span=>
                    const _: () = ::core::assert!(
                        #private::str_eq(<#previous as #private::Event>::NAME, #name),
                        #name_message
                    );
                    const _: () = ::core::assert!(
                        <#previous as #private::Event>::VERSION == #expected,
                        #version_message
                    );
                },
            )
        }
    };
    quote! {
        const _: () = {
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
            }
            #chain_checks
        };
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
    let name = &event.name;
    let version = event.version;
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
