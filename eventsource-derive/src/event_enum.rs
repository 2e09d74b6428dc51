//! `#[derive(EventEnum)]`: an enum whose variants are events, each with its own name, version
//! and upcaster chain, stored as the equivalent struct would be, and checked against the schema
//! lock one line per variant version.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::event::{chain_checks, serde_attrs};
use crate::internals::fingerprint::{Shape, deep_expr, local_text, wire_types};
use crate::internals::{ast, check, ctxt::Ctxt, lock};

/// `source_file` is the file the enum is defined in, which `lock = "..."` is relative to.
pub(crate) fn expand(input: &DeriveInput, source_file: Option<&Path>) -> TokenStream {
    let cx = Ctxt::new();
    let events = ast::EventEnum::from_syn(&cx, input);
    check::event_enum(&cx, &events);
    let subjects: Vec<lock::Subject> = events
        .variants
        .iter()
        .map(|variant| subject(&events, variant))
        .collect();
    let lock_attr = lock::LockAttr {
        path: events.lock.as_ref(),
        ident: events.ident,
        source_file,
    };
    let track_lock = lock::check(&cx, &lock_attr, &subjects);
    cx.finish(
        || {
            let generated = generate(&events);
            quote!(#generated const _: () = { #track_lock };)
        },
        || stub(&events),
    )
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
        ty: format!("{}::{}", events.ident, variant.ident),
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
        chain_checks(&private, &variant.event, &subject, &quote!(#ident))
    });
    let event_enum = EventEnumImpl {
        names: quote!(#(#names),*),
        name: quote!(match *self { #(#name_arms)* }),
        schema_version: quote!(match *self { #(#version_arms)* }),
        encode: quote!(#private::encode_variant(self)),
        decode: quote! {
            match name {
                #(#decode_arms)*
                _ => ::core::result::Result::Err(#private::DecodeFailure::UnknownEvent),
            }
        },
        // One error for a missing `Serialize` or `Deserialize` derive, here, rather than one at
        // each use in the bodies.
        bounds: quote!(where #ident: #private::StoredEnum),
        personal_fields: TokenStream::new(),
        schemas: Some(variant_schemas(&private, events)),
        // Variants are not `Event`s of their own: an enum's events carry no tags.
        tags: None,
    }
    .impl_for(&private, ident);
    let shape_impl = crate::shape::shape_impl(&private, events.input, &local_text(events.input));
    let markers = events.variants.iter().map(|variant| {
        let text = Shape::of_variant(events.input, variant.variant).to_string();
        let deep = deep_expr(&private, &text, &wire_types(&variant.variant.fields, ident));
        let subject = format!("variant `{ident}::{}`", variant.ident);
        crate::internals::unique::event_version(&private, &variant.event, &subject, &deep)
    });
    quote! {
        #(#markers)*
        const _: () = {
            #shape_impl
            #[automatically_derived]
            #event_enum
            #(#chain_checks)*
        };
    }
}

/// The schemas of each variant's payload (its content, as `encode_variant` stores it) at its
/// version, and of the older versions of its chain.
fn variant_schemas(private: &TokenStream, events: &ast::EventEnum) -> TokenStream {
    let pushes = events.variants.iter().map(|variant| {
        let (name, version) = (&variant.event.name, variant.event.version);
        let schema = crate::internals::schema::variant_body(private, events.input, variant.variant);
        let older = variant.event.previous.as_ref().map(|previous| {
            quote_spanned!(previous.span()=> schemas.extend(<#previous as #private::Event>::version_schemas());)
        });
        quote! {
            schemas.push(#private::EventSchema::new(#name, #version, #schema));
            #older
        }
    });
    quote! {
        let mut schemas = ::std::vec::Vec::new();
        #(#pushes)*
        schemas
    }
}

/// The bodies of an `EventEnum` impl, for the derived enum and for the `<Name>Event` enum that
/// `#[derive(Aggregate)]` generates.
pub(crate) struct EventEnumImpl {
    /// The elements of `NAMES`.
    pub(crate) names: TokenStream,
    /// The body of `fn name(&self)`.
    pub(crate) name: TokenStream,
    /// The body of `fn schema_version(&self)`.
    pub(crate) schema_version: TokenStream,
    /// The body of `fn encode(&self)`.
    pub(crate) encode: TokenStream,
    /// The body of `fn decode(name, version, payload)`, and of `fn decode_json` (the same
    /// tokens, with `payload: &str`: it calls functions generic over the payload's form).
    pub(crate) decode: TokenStream,
    /// The impl's `where` clause, if any.
    pub(crate) bounds: TokenStream,
    /// The body of `fn personal_fields(&self, out)`; empty keeps the trait's default (none).
    pub(crate) personal_fields: TokenStream,
    /// The body of `fn event_schemas()`, if any (a `Vec<EventSchema>`).
    pub(crate) schemas: Option<TokenStream>,
    /// The body of `fn event_tags(&self)`, if not the trait's default (none).
    pub(crate) tags: Option<TokenStream>,
}

impl EventEnumImpl {
    /// After an error: an impl that only type-checks, so that uses of the enum add no errors.
    pub(crate) fn stub() -> Self {
        let unimplemented = quote!(::core::unimplemented!());
        EventEnumImpl {
            names: TokenStream::new(),
            name: unimplemented.clone(),
            schema_version: unimplemented.clone(),
            encode: unimplemented.clone(),
            decode: quote!({
                let _ = (name, version, payload);
                ::core::unimplemented!()
            }),
            bounds: TokenStream::new(),
            personal_fields: TokenStream::new(),
            schemas: None,
            tags: None,
        }
    }

    /// `impl EventEnum for #ty { ... }`.
    pub(crate) fn impl_for(&self, private: &TokenStream, ty: &syn::Ident) -> TokenStream {
        let EventEnumImpl {
            names,
            name,
            schema_version,
            encode,
            decode,
            bounds,
            personal_fields,
            schemas,
            tags,
        } = self;
        let personal_fields = (!personal_fields.is_empty()).then(|| {
            quote! {
                fn personal_fields(&self, out: &mut ::std::vec::Vec<#private::PersonalField>) {
                    #personal_fields
                }
            }
        });
        let schemas = schemas.as_ref().map(|schemas| {
            quote! {
                fn event_schemas() -> ::std::vec::Vec<#private::EventSchema> {
                    #schemas
                }
            }
        });
        let tags = tags.as_ref().map(|body| {
            quote! {
                fn event_tags(&self) -> ::std::vec::Vec<#private::Tag> {
                    #body
                }
            }
        });
        quote! {
            impl #private::EventEnum for #ty #bounds {
                const NAMES: &'static [&'static str] = &[#names];

                fn name(&self) -> &'static str {
                    #name
                }

                fn schema_version(&self) -> u32 {
                    #schema_version
                }

                fn encode(&self) -> ::core::result::Result<
                    #private::serde_json::Value,
                    #private::serde_json::Error,
                > {
                    #encode
                }

                fn decode(
                    name: &str,
                    version: u32,
                    payload: &#private::serde_json::Value,
                ) -> ::core::result::Result<Self, #private::DecodeFailure> {
                    #decode
                }

                // The same body, straight from the text: the functions it calls are generic
                // over the payload's form.
                fn decode_json(
                    name: &str,
                    version: u32,
                    payload: &str,
                ) -> ::core::result::Result<Self, #private::DecodeFailure> {
                    #decode
                }

                #personal_fields
                #schemas
                #tags
            }
        }
    }
}

/// After an error: an `EventEnum` impl, so that an aggregate naming the enum adds no errors of
/// its own.
fn stub(events: &ast::EventEnum) -> TokenStream {
    if !matches!(events.input.data, syn::Data::Enum(_)) || !events.input.generics.params.is_empty()
    {
        return TokenStream::new();
    }
    let stub = EventEnumImpl::stub().impl_for(&private(events), events.ident);
    quote!(const _: () = { #stub };)
}

fn private(events: &ast::EventEnum) -> TokenStream {
    let krate = &events.krate;
    quote!(#krate::__private)
}
