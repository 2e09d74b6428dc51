//! `#[derive(Shape)]`: the deep schema fingerprint of a nested type (a struct or enum used
//! inside an event or an aggregate's state), and its entry in the schema lock.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, parse_quote};

use crate::internals::fingerprint::{deep_expr, local_text, wire_types};
use crate::internals::{attr, ctxt::Ctxt, lock};

pub(crate) fn expand(input: &DeriveInput, source_file: Option<&Path>) -> TokenStream {
    let cx = Ctxt::new();
    let attrs = attr::shape_attrs(&cx, &input.attrs);
    if let Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "`Shape` cannot be derived for a union: serde does not serialize unions; use a struct or an enum",
        );
    }
    let text = local_text(input);
    let lock_attr = lock::LockAttr {
        path: attrs.lock.as_ref(),
        ident: &input.ident,
        source_file,
    };
    let track_lock = lock::check_type(&cx, &lock_attr, &text);
    let krate = attrs.krate.unwrap_or_else(|| parse_quote!(::eventsource));
    let private = quote!(#krate::__private);
    let is_union = matches!(input.data, Data::Union(_));
    cx.finish(
        || {
            let shape_impl = shape_impl(&private, input, &text);
            quote!(const _: () = { #shape_impl #track_lock };)
        },
        // After a lock mismatch the impl is still there, so that the events holding the type
        // add no errors of their own.
        || {
            if is_union {
                return TokenStream::new();
            }
            let shape_impl = shape_impl(&private, input, &text);
            quote!(const _: () = { #shape_impl };)
        },
    )
}

/// `impl Shape for <input>` with the fingerprint of `text` and every wire field's type, each
/// type parameter bound by `Shape`.
pub(crate) fn shape_impl(private: &TokenStream, input: &DeriveInput, text: &str) -> TokenStream {
    let types = match &input.data {
        Data::Struct(data) => wire_types(&data.fields, &input.ident),
        Data::Enum(data) => data
            .variants
            .iter()
            .flat_map(|variant| wire_types(&variant.fields, &input.ident))
            .collect(),
        Data::Union(_) => Vec::new(),
    };
    let deep = deep_expr(private, text, &types);
    let ident = &input.ident;
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(parse_quote!(#private::Shape));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let schema = crate::internals::schema::body(private, input);
    quote! {
        #[automatically_derived]
        impl #impl_generics #private::Shape for #ident #ty_generics #where_clause {
            const SHAPE_FINGERPRINT: u64 = #deep;
            fn json_schema() -> #private::serde_json::Value {
                #schema
            }
        }
    }
}
