//! `#[derive(Aggregate)]`: the event and command enums, the fold and command dispatch, and the
//! `Aggregate` impl.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::event::{literal_message, text};
use crate::event_enum::EventEnumImpl;
use crate::internals::ast::{self, Declared, Member};
use crate::internals::{check, ctxt::Ctxt};

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let aggregate = ast::Aggregate::from_syn(&cx, input);
    check::aggregate(&cx, &aggregate);
    cx.finish(|| generate(&aggregate), || stub(&aggregate))
}

fn generate(aggregate: &ast::Aggregate) -> TokenStream {
    let private = private(aggregate);
    let ident = aggregate.ident;
    let name = &aggregate.name;
    let (shape_impl, fingerprint) = state_fingerprint(aggregate);
    let event_type = aggregate.event_type();
    let command_type = aggregate.command_type();
    let error = error_type(aggregate);
    let services = services_type(aggregate);
    let snapshot = match aggregate.snapshot.as_ref().and_then(|s| s.every.as_ref()) {
        Some((_, every)) => quote!(#private::SnapshotPolicy::Every(#every)),
        None => quote!(#private::SnapshotPolicy::Never),
    };

    let enums = enums(aggregate);
    let event_set = match &aggregate.events {
        Some(Declared::Listed(_)) => event_set(aggregate),
        Some(Declared::Enum(..)) | None => TokenStream::new(),
    };
    let fold = fold(aggregate);
    let services_param = if aggregate.services.is_some() {
        quote!(services)
    } else {
        quote!(_services)
    };
    let dispatch = dispatch(aggregate);
    let listed_checks = listed_checks(aggregate);
    let command_fingerprint = command_fingerprint(aggregate);
    let decision = decision(aggregate);
    let marker = crate::internals::unique::aggregate_marker(name);

    quote! {
        #listed_checks
        #enums
        #marker
        const _: () = {
            #event_set
            #shape_impl

            #[automatically_derived]
            impl #private::Aggregate for #ident {
                const NAME: &'static str = #name;
                const SNAPSHOT: #private::SnapshotPolicy = #snapshot;
                const STATE_FINGERPRINT: &'static str = #fingerprint;
                type Event = #event_type;
                type Command = #command_type;
                type Error = #error;
                type Services = #services;

                #[inline]
                fn evolve(&mut self, event: &#event_type) {
                    #fold
                }

                fn decide(
                    &self,
                    command: #command_type,
                    #services_param: &#services,
                ) -> ::core::result::Result<#private::Events<Self>, #error> {
                    #dispatch
                }

                #command_fingerprint
            }

            #decision
        };
    }
}

/// With `decision`: `Decision` for the aggregate, each listed command's boundary from its
/// `ConsistencyBoundary` impl (spanned at the command, where a missing impl is reported).
fn decision(aggregate: &ast::Aggregate) -> TokenStream {
    if aggregate.decision.is_none() {
        return TokenStream::new();
    }
    let private = private(aggregate);
    let ident = aggregate.ident;
    let command_type = aggregate.command_type();
    let call = |path: &dyn ToTokens, span: Span| quote_spanned!(span=> <#ident as #private::ConsistencyBoundary<#path>>::boundary(command));
    let body = match &aggregate.commands {
        Declared::Enum(ty) => call(ty, ty.span()),
        Declared::Listed(members) if members.items.is_empty() => quote!(match *command {}),
        Declared::Listed(members) => {
            let command_enum = &aggregate.command_enum;
            let arms = members.items.iter().map(|Member { path, variant }| {
                let call = call(path, path.span());
                quote!(#command_enum::#variant(ref command) => #call,)
            });
            quote!(match *command { #(#arms)* })
        }
    };
    quote! {
        #[automatically_derived]
        impl #private::Decision for #ident {
            fn command_boundary(command: &#command_type) -> #private::Boundary {
                #body
            }
        }
    }
}

/// The state's `Shape` impl (none with `snapshot(version = N)`) and the `STATE_FINGERPRINT`
/// expression: the deep shape's fingerprint as hex, or `version-N`.
fn state_fingerprint(aggregate: &ast::Aggregate) -> (TokenStream, TokenStream) {
    if let Some((_, version)) = aggregate.snapshot.as_ref().and_then(|s| s.version.as_ref()) {
        let fingerprint = format!("version-{version}");
        return (TokenStream::new(), quote!(#fingerprint));
    }
    let private = private(aggregate);
    let ident = aggregate.ident;
    let shape_impl = crate::shape::shape_impl(&private, aggregate.input, &aggregate.state_shape);
    let fingerprint = quote! {{
        const HEX: [u8; 16] = #private::shape_hex(<#ident as #private::Shape>::SHAPE_FINGERPRINT);
        #private::hex_str(&HEX)
    }};
    (shape_impl, fingerprint)
}

/// The body of `evolve`: a `match` over the listed events, each to its `Apply` impl, or the
/// user's event enum to `Apply<Enum>`.
fn fold(aggregate: &ast::Aggregate) -> TokenStream {
    let private = private(aggregate);
    match &aggregate.events {
        Some(Declared::Enum(ty)) => quote_spanned! {ty.span()=>
            <Self as #private::Apply<#ty>>::apply(self, event)
        },
        Some(Declared::Listed(_)) | None => {
            let event_enum = &aggregate.event_enum;
            let arms = aggregate.event_members().iter().map(|Member { path, variant }| {
                quote_spanned! {path.span()=>
                    #event_enum::#variant(ref event) => <Self as #private::Apply<#path>>::apply(self, event),
                }
            });
            quote!(match *event { #(#arms)* })
        }
    }
}

/// `Aggregate::command_fingerprint`: the command's name, with a digest of its content where
/// the command implements `Serialize` (chosen by method resolution on a probe, which skips the
/// digest impl when the bound does not hold). For listed commands the name is the variant's;
/// for the user's own command enum it is the enum's (its variants are then told apart by the
/// digest, whose JSON names the variant, so only when the enum implements `Serialize`).
fn command_fingerprint(aggregate: &ast::Aggregate) -> TokenStream {
    let private = private(aggregate);
    let command_type = aggregate.command_type();
    let probe =
        |name: &str| quote!((&&#private::FingerprintProbe(command)).command_fingerprint(#name));
    let body = match &aggregate.commands {
        Declared::Enum(ty) => {
            let name = text(ty);
            let name = name.rsplit("::").next().unwrap_or(&name).to_owned();
            probe(&name)
        }
        Declared::Listed(members) => {
            let command_enum = &aggregate.command_enum;
            let arms = members.items.iter().map(|Member { variant, .. }| {
                let call = probe(&variant.to_string());
                quote!(#command_enum::#variant(ref command) => #call,)
            });
            quote!(match *command { #(#arms)* })
        }
    };
    quote! {
        // An aggregate without commands has an empty enum: the `match` never returns.
        #[allow(unreachable_code)]
        fn command_fingerprint(
            command: &#command_type,
        ) -> ::core::option::Option<#private::CommandFingerprint> {
            #[allow(unused_imports)]
            use #private::{FingerprintByName as _, FingerprintBySerialize as _};
            ::core::option::Option::Some(#body)
        }
    }
}

/// The body of `decide`: a `match` over the listed commands, each to its `Handle` (or
/// `HandleWith`) impl, or the user's command enum to `Handle<Enum>`.
fn dispatch(aggregate: &ast::Aggregate) -> TokenStream {
    let private = private(aggregate);
    // Spanned at the command's type, where a missing `Handle` impl is reported.
    let call = |path: &dyn ToTokens, span: Span| {
        if aggregate.services.is_some() {
            quote_spanned!(span=> <Self as #private::HandleWith<#path>>::handle(self, command, services))
        } else {
            quote_spanned!(span=> <Self as #private::Handle<#path>>::handle(self, command))
        }
    };
    match &aggregate.commands {
        Declared::Enum(ty) => call(ty, ty.span()),
        Declared::Listed(members) => {
            let command_enum = &aggregate.command_enum;
            let arms = members.items.iter().map(|Member { path, variant }| {
                let call = call(path, path.span());
                quote!(#command_enum::#variant(command) => #call,)
            });
            quote!(match command { #(#arms)* })
        }
    }
}

/// `<Name>Event` and `<Name>Command` (each unless the user names an enum of their own), with
/// `From` each member and a `Debug` that shows the
/// member itself (`Deposited { amount: 5 }`, not `Deposited(Deposited { amount: 5 })`).
fn enums(aggregate: &ast::Aggregate) -> TokenStream {
    let ident = aggregate.ident;
    let vis = aggregate.vis;
    let event_enum = &aggregate.event_enum;
    let command_enum = &aggregate.command_enum;
    let event_doc = format!(
        "The events of `{ident}`: one variant per event listed in `#[aggregate(events(...))]` (generated by `#[derive(Aggregate)]`)."
    );
    let command_doc = format!(
        "The commands of `{ident}`: one variant per command listed in `#[aggregate(commands(...))]` (generated by `#[derive(Aggregate)]`)."
    );
    let event_enum_def = match &aggregate.events {
        Some(Declared::Enum(..)) => None,
        Some(Declared::Listed(_)) | None => Some(member_enum(
            event_enum,
            vis,
            &event_doc,
            aggregate.event_members(),
            Some((&private(aggregate), ident)),
        )),
    };
    let command_enum_def = match &aggregate.commands {
        Declared::Enum(..) => None,
        Declared::Listed(members) => Some(member_enum(
            command_enum,
            vis,
            &command_doc,
            &members.items,
            None,
        )),
    };
    quote!(#event_enum_def #command_enum_def)
}

fn member_enum(
    enum_ident: &syn::Ident,
    vis: &syn::Visibility,
    doc: &str,
    members: &[Member],
    events_of: Option<(&TokenStream, &syn::Ident)>,
) -> TokenStream {
    // After an error a type may be listed twice; the stub must still be one valid enum.
    let mut seen = std::collections::HashSet::new();
    let members: Vec<&Member> = members
        .iter()
        .filter(|member| seen.insert(member.variant.to_string()))
        .collect();
    let variants = members.iter().map(|&Member { path, variant }| {
        let doc = format!("`{}`.", text(path));
        quote!(#[doc = #doc] #variant(#path),)
    });
    let from_impls = members.iter().map(|&Member { path, variant }| {
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#path> for #enum_ident {
                fn from(inner: #path) -> Self {
                    #enum_ident::#variant(inner)
                }
            }
        }
    });
    let Some((private, aggregate)) = events_of else {
        let debug_arms = members.iter().map(|&Member { variant, .. }| {
            quote!(#enum_ident::#variant(ref inner) => ::core::fmt::Debug::fmt(inner, f),)
        });
        let debug = debug_impl(enum_ident, debug_arms);
        return quote! {
            #[doc = #doc]
            #[derive(::core::clone::Clone)]
            #[allow(clippy::large_enum_variant, clippy::enum_variant_names)]
            #vis enum #enum_ident {
                #(#variants)*
            }
            const _: () = {
                #debug
                #(#from_impls)*
            };
        };
    };
    // The events' `Clone`, `PartialEq` and `Debug` are reached through `ListedEvent<Aggregate>`,
    // spanned at each event in `events(...)`: an event that lacks one of them is then one
    // error there (rustc merges identical ones) that names the aggregate and says what to
    // derive, rather than rustc's bound errors at the derive.
    let listed = |path: &syn::Path| quote_spanned!(path.span()=> <#path as #private::ListedEvent<#aggregate>>);
    let clone_arms = members.iter().map(|&Member { path, variant }| {
        let listed = listed(path);
        quote!(#enum_ident::#variant(ref inner) => #enum_ident::#variant(#listed::clone_event(inner)),)
    });
    let eq_arms = members.iter().map(|&Member { path, variant }| {
        let listed = listed(path);
        quote!((#enum_ident::#variant(a), #enum_ident::#variant(b)) => #listed::eq_event(a, b),)
    });
    let debug_arms = members.iter().map(|&Member { path, variant }| {
        let listed = listed(path);
        quote!(#enum_ident::#variant(ref inner) => #listed::fmt_event(inner, f),)
    });
    let other_arm = (members.len() > 1).then(|| quote!(_ => false,));
    // With no events (after an error), the enum is empty: nothing to compare.
    let eq_body = if members.is_empty() {
        quote!(match *self {})
    } else {
        quote!(match (self, other) { #(#eq_arms)* #other_arm })
    };
    let debug = debug_impl(enum_ident, debug_arms);
    quote! {
        #[doc = #doc]
        #[allow(clippy::large_enum_variant, clippy::enum_variant_names)]
        #vis enum #enum_ident {
            #(#variants)*
        }
        const _: () = {
            #[automatically_derived]
            impl ::core::clone::Clone for #enum_ident {
                fn clone(&self) -> Self {
                    match *self {
                        #(#clone_arms)*
                    }
                }
            }
            #[automatically_derived]
            impl ::core::cmp::PartialEq for #enum_ident {
                fn eq(&self, other: &Self) -> bool {
                    #eq_body
                }
            }
            #debug
            #(#from_impls)*
        };
    }
}

/// `EventEnum` for `<Name>Event`: names, versions and the stored form, dispatched per variant.
fn event_set(aggregate: &ast::Aggregate) -> TokenStream {
    let private = private(aggregate);
    let event_enum = &aggregate.event_enum;
    let events = aggregate.event_members();
    let ident = aggregate.ident;
    // Through `ListedEvent<Aggregate>`, as the enum's other impls: a listed type that is not
    // an event is one error at it, naming the aggregate.
    let event_trait =
        |path: &syn::Path| quote_spanned!(path.span()=> <#path as #private::ListedEvent<#ident>>);
    let names = events.iter().map(|m| {
        let event = event_trait(&m.path);
        quote!(#event::LISTED_NAME)
    });
    let name_arms = events.iter().map(|Member { path, variant }| {
        let event = event_trait(path);
        quote!(#event_enum::#variant(_) => #event::LISTED_NAME,)
    });
    let version_arms = events.iter().map(|Member { path, variant }| {
        let event = event_trait(path);
        quote!(#event_enum::#variant(_) => #event::LISTED_VERSION,)
    });
    let encode_arms = events.iter().map(|Member { path, variant }| {
        let listed = quote_spanned!(path.span()=> <#path as #private::ListedEvent<#ident>>);
        quote!(#event_enum::#variant(ref event) => #listed::encode_event(event),)
    });
    let personal_arms = events.iter().map(|Member { path, variant }| {
        let listed = quote_spanned!(path.span()=> <#path as #private::ListedEvent<#ident>>);
        quote!(#event_enum::#variant(ref event) => #listed::listed_personal_fields(event, out),)
    });
    let tag_arms = events.iter().map(|Member { path, variant }| {
        let event = event_trait(path);
        quote!(#event_enum::#variant(ref event) => #event::listed_tags(event),)
    });
    let decoders = events.iter().map(|Member { path, variant }| {
        let event = event_trait(path);
        quote! {
            if name == #event::LISTED_NAME {
                return #event::decode_listed(version, payload).map(#event_enum::#variant);
            }
        }
    });
    let schemas = events.iter().map(|Member { path, .. }| {
        let listed = quote_spanned!(path.span()=> <#path as #private::ListedEvent<#ident>>);
        quote!(schemas.extend(#listed::listed_schemas());)
    });
    let event_set = EventEnumImpl {
        names: quote!(#(#names),*),
        name: quote!(match *self { #(#name_arms)* }),
        schema_version: quote!(match *self { #(#version_arms)* }),
        encode: quote!(match *self { #(#encode_arms)* }),
        decode: quote! {
            #(#decoders)*
            ::core::result::Result::Err(#private::DecodeFailure::UnknownEvent)
        },
        bounds: TokenStream::new(),
        personal_fields: quote!(match *self { #(#personal_arms)* }),
        schemas: Some(quote! {
            let mut schemas = ::std::vec::Vec::new();
            #(#schemas)*
            schemas
        }),
        tags: Some(quote!(match *self { #(#tag_arms)* })),
    }
    .impl_for(&private, event_enum);
    quote!(#[automatically_derived] #event_set)
}

/// The checks of the listed events, each spanned at the event's name in the list: that their
/// stored names differ (one `const` evaluation over the whole list, `first_repeated`, then one
/// cheap comparison per event, so that the cost grows with the number of events, not with the
/// number of pairs), and that each is the newest version of its chain (no `SupersededBy`
/// impl, asked through `NewestProbe` in a function that is never called: only its type check
/// matters, and method calls cannot run in a `const`).
///
/// The name checks sit in the array length of a struct's field, which rustc evaluates when it
/// checks the struct's well-formedness, before it checks trait impls for overlap: emitted
/// before the enums, they are the first error even when one type is listed twice through an
/// alias (whose two `From` impls then conflict, E0119, reported after them).
fn listed_checks(aggregate: &ast::Aggregate) -> TokenStream {
    let private = private(aggregate);
    let ident = aggregate.ident;
    let events = aggregate.event_members();
    if events.is_empty() || !matches!(aggregate.events, Some(Declared::Listed(_))) {
        return TokenStream::new();
    }
    let names = events.iter().map(|Member { path, .. }| {
        quote_spanned!(path.span()=> <#path as #private::ListedEvent<#ident>>::LISTED_NAME)
    });
    let distinct = events.iter().enumerate().map(|(index, Member { path, .. })| {
        let message = literal_message(format!(
            "event `{}` of `{ident}` has the same name as an event listed before it: each event of an aggregate needs its own name (list only the newest version of a version chain, and each type once)",
            text(path),
        ));
        quote_spanned!(path.span()=> ::core::assert!(REPEATED != #index, #message);)
    });
    let newest = events.iter().map(|Member { path, .. }| {
        quote_spanned! {path.span()=>
            #private::assert_newest::<_, #path, #ident>(
                (&#private::NewestProbe::<#path>::NEW).successor(),
            );
        }
    });
    quote! {
        const _: () = {
            const REPEATED: usize = #private::first_repeated(&[#(#names),*]);
            #[allow(dead_code)]
            struct ListedEvents([(); { #(#distinct)* 0 }]);
            #[allow(dead_code)]
            fn listed_events_are_the_newest_versions() {
                #[allow(unused_imports)]
                use #private::{NotRetired as _, RetiredBy as _};
                #(#newest)*
            }
        };
    }
}

/// After an error: the enums and an `Aggregate` impl with the declared types, so that the
/// user's `Apply` and `Handle` impls still type-check and add no errors of their own.
fn stub(aggregate: &ast::Aggregate) -> TokenStream {
    if !aggregate.input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let private = private(aggregate);
    let ident = aggregate.ident;
    let name = &aggregate.name;
    let event_type = aggregate.event_type();
    let command_type = aggregate.command_type();
    let event_enum = &aggregate.event_enum;
    let error = error_type(aggregate);
    let services = services_type(aggregate);
    let enums = enums(aggregate);
    // The user's own event enum has its own impl (or its derive's stub).
    let event_set = match &aggregate.events {
        Some(Declared::Enum(..)) => None,
        Some(Declared::Listed(_)) | None => {
            Some(EventEnumImpl::stub().impl_for(&private, event_enum))
        }
    };
    // Only a struct can meet `Aggregate`'s bounds (`Default` ...): for other shapes the impl
    // would only add errors.
    let aggregate_impl = matches!(aggregate.input.data, syn::Data::Struct(_)).then(|| {
        quote! {
            impl #private::Aggregate for #ident {
                const NAME: &'static str = #name;
                const STATE_FINGERPRINT: &'static str = "";
                type Event = #event_type;
                type Command = #command_type;
                type Error = #error;
                type Services = #services;
                fn evolve(&mut self, _: &#event_type) {
                    ::core::unimplemented!()
                }
                fn decide(
                    &self,
                    _: #command_type,
                    _: &#services,
                ) -> ::core::result::Result<#private::Events<Self>, #error> {
                    ::core::unimplemented!()
                }
            }
        }
    });
    quote! {
        #enums
        const _: () = {
            #event_set
            #aggregate_impl
        };
    }
}

fn private(aggregate: &ast::Aggregate) -> TokenStream {
    let krate = &aggregate.krate;
    quote!(#krate::__private)
}

fn error_type(aggregate: &ast::Aggregate) -> TokenStream {
    match &aggregate.error {
        Some(error) => quote!(#error),
        None => quote!(::core::convert::Infallible),
    }
}

fn services_type(aggregate: &ast::Aggregate) -> TokenStream {
    match &aggregate.services {
        Some(services) => quote!(#services),
        None => quote!(()),
    }
}

/// `Debug` for a generated enum: one arm per member, as `#[derive(Debug)]` would write it.
fn debug_impl(
    enum_ident: &syn::Ident,
    debug_arms: impl Iterator<Item = TokenStream>,
) -> TokenStream {
    quote! {
        #[automatically_derived]
        impl ::core::fmt::Debug for #enum_ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match *self {
                    #(#debug_arms)*
                }
            }
        }
    }
}
