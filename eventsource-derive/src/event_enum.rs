//! `#[derive(EventEnum)]`: an enum whose variants are events, each with its own name, version
//! and upcaster chain, stored as the equivalent struct would be, and checked against the schema
//! lock one line per variant version.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::event::{chain_checks, serde_attrs};
use crate::internals::fingerprint::Shape;
use crate::internals::{ast, check, ctxt::Ctxt, lock};

/// `source_file` is the file the enum is defined in, which `lock = "..."` is relative to.
pub(crate) fn expand(input: &DeriveInput, source_file: Option<&Path>) -> TokenStream {
    let cx = Ctxt::new();
    let events = ast::EventEnum::from_syn(&cx, input);
    check::event_enum(&cx, &events);
    // As for a struct event: the lock is consulted only for well-formed names and versions.
    let track_lock = if cx.has_errors() {
        TokenStream::new()
    } else {
        let lock_attr = lock::LockAttr {
            path: events.lock.as_ref(),
            ident: events.ident,
            source_file,
        };
        let subjects: Vec<lock::Subject> = events
            .variants
            .iter()
            .map(|variant| subject(&events, variant))
            .collect();
        lock::check(&cx, &lock_attr, &subjects)
    };
    match cx.check() {
        Ok(()) => {
            let generated = generate(&events);
            quote!(#generated const _: () = { #track_lock };)
        }
        Err(error) => {
            let error = error.into_compile_error();
            let stub = stub(&events);
            quote!(#error #stub)
        }
    }
}

/// The lock's view of one variant.
fn subject<'a>(events: &ast::EventEnum<'a>, variant: &ast::Variant<'a>) -> lock::Subject<'a> {
    let mut attrs = serde_attrs(&events.input.attrs);
    attrs.extend(serde_attrs(&variant.variant.attrs));
    lock::Subject {
        name: variant.event.name.value(),
        version: variant.event.version,
        ident: variant.ident,
        attrs,
        fields: &variant.variant.fields,
        shape: Shape::of_variant(events.input, variant.variant),
        is_variant: true,
    }
}

fn generate(events: &ast::EventEnum) -> TokenStream {
    let ident = events.ident;
    let private = private(events);
    let names = events.variants.iter().map(|v| &v.event.name);
    let name_arms = events.variants.iter().map(|variant| {
        let (variant_ident, name) = (variant.ident, &variant.event.name);
        quote!(#ident::#variant_ident { .. } => #name,)
    });
    let version_arms = events.variants.iter().map(|variant| {
        let (variant_ident, version) = (variant.ident, variant.event.version);
        quote!(#ident::#variant_ident { .. } => #version,)
    });
    let decode_arms = events.variants.iter().map(|variant| {
        let (index, name) = (variant.index, &variant.event.name);
        let latest = variant.event.version;
        let decode = match &variant.event.previous {
            None => quote! {
                #private::decode_variant::<Self>(#index, #latest, version, payload)
            },
            Some(previous) => quote_spanned! {previous.span()=>
                #private::decode_variant_upcast::<#previous, Self>(
                    #index, #name, #latest, version, payload,
                )
            },
        };
        quote!(#name => #decode,)
    });
    let chain_checks = events.variants.iter().map(|variant| {
        let subject = format!("variant `{ident}::{}`", variant.ident);
        chain_checks(&private, &variant.event, &subject)
    });
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #private::EventEnum for #ident {
                const NAMES: &'static [&'static str] = &[#(#names),*];

                fn name(&self) -> &'static str {
                    match *self {
                        #(#name_arms)*
                    }
                }

                fn schema_version(&self) -> u32 {
                    match *self {
                        #(#version_arms)*
                    }
                }

                fn encode(&self) -> ::core::result::Result<
                    #private::serde_json::Value,
                    #private::serde_json::Error,
                > {
                    #private::encode_variant(self)
                }

                fn decode(
                    name: &str,
                    version: u32,
                    payload: &#private::serde_json::Value,
                ) -> ::core::result::Result<Self, #private::DecodeFailure> {
                    match name {
                        #(#decode_arms)*
                        _ => ::core::result::Result::Err(#private::DecodeFailure::UnknownEvent),
                    }
                }
            }
            #(#chain_checks)*
        };
    }
}

/// After an error: an `EventEnum` impl, so that an aggregate naming the enum adds no errors of
/// its own.
fn stub(events: &ast::EventEnum) -> TokenStream {
    if !matches!(events.input.data, syn::Data::Enum(_)) || !events.input.generics.params.is_empty()
    {
        return TokenStream::new();
    }
    let ident = events.ident;
    let private = private(events);
    quote! {
        const _: () = {
            impl #private::EventEnum for #ident {
                const NAMES: &'static [&'static str] = &[];
                fn name(&self) -> &'static str {
                    ::core::unimplemented!()
                }
                fn schema_version(&self) -> u32 {
                    ::core::unimplemented!()
                }
                fn encode(&self) -> ::core::result::Result<
                    #private::serde_json::Value,
                    #private::serde_json::Error,
                > {
                    ::core::unimplemented!()
                }
                fn decode(
                    _: &str,
                    _: u32,
                    _: &#private::serde_json::Value,
                ) -> ::core::result::Result<Self, #private::DecodeFailure> {
                    ::core::unimplemented!()
                }
            }
        };
    }
}

fn private(events: &ast::EventEnum) -> TokenStream {
    let krate = &events.krate;
    quote!(#krate::__private)
}
