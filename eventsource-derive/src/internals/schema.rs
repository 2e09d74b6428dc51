//! The JSON Schema a derived `Shape::json_schema` returns: the subset of serde's data model
//! the derive can describe exactly from the item's tokens, and `{}` (anything) for the rest,
//! so that a schema never rejects a payload serde would accept.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitStr, Type};

/// What the `serde` attributes of one item say, as far as the schema is concerned.
#[derive(Default)]
struct Serde {
    rename: Option<String>,
    rename_all: Option<String>,
    default: bool,
    skip: bool,
    skip_serializing_if: bool,
    deny_unknown_fields: bool,
    transparent: bool,
    /// `flatten`, `tag`, `untagged`, `content`, `with`, `rename(serialize = ..)` and the like:
    /// the schema is not exact any more.
    opaque: bool,
}

fn serde(attrs: &[Attribute]) -> Serde {
    let mut out = Serde::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            if meta.input.peek(syn::Token![=]) {
                let value = meta.value()?;
                if key == "rename" || key == "rename_all" {
                    let lit: LitStr = value.parse()?;
                    if key == "rename" {
                        out.rename = Some(lit.value());
                    } else {
                        out.rename_all = Some(lit.value());
                    }
                } else {
                    while !value.is_empty() && !value.peek(syn::Token![,]) {
                        value.parse::<proc_macro2::TokenTree>()?;
                    }
                    match key.as_str() {
                        "default" => out.default = true,
                        "skip_serializing_if" => out.skip_serializing_if = true,
                        "bound" => {}
                        _ => out.opaque = true,
                    }
                }
            } else if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                content.parse::<TokenStream>()?;
                if key != "bound" {
                    out.opaque = true;
                }
            } else {
                match key.as_str() {
                    "default" => out.default = true,
                    "skip" => out.skip = true,
                    "skip_serializing" | "skip_deserializing" => out.skip_serializing_if = true,
                    "deny_unknown_fields" => out.deny_unknown_fields = true,
                    "transparent" => out.transparent = true,
                    _ => out.opaque = true,
                }
            }
            Ok(())
        });
        if result.is_err() {
            out.opaque = true;
        }
    }
    out
}

/// The body of `fn json_schema() -> Value` for `input`.
pub(crate) fn body(private: &TokenStream, input: &DeriveInput) -> TokenStream {
    let container = serde(&input.attrs);
    let schema = quote!(#private::shape::schema);
    let anything = quote!(#schema::any());
    if container.opaque {
        return anything;
    }
    let ident = &input.ident;
    match &input.data {
        Data::Struct(data) => {
            fields_schema(private, ident, &container, &data.fields, false).unwrap_or(anything)
        }
        Data::Enum(data) => {
            let mut variants = Vec::new();
            for variant in &data.variants {
                let attrs = serde(&variant.attrs);
                if attrs.opaque {
                    return anything;
                }
                if attrs.skip {
                    continue;
                }
                let name = attrs.rename.clone().unwrap_or_else(|| {
                    let name = variant.ident.to_string();
                    container
                        .rename_all
                        .as_deref()
                        .and_then(|rule| rename(&name, rule, true))
                        .unwrap_or(name)
                });
                if matches!(variant.fields, Fields::Unit) {
                    variants.push(quote!(#schema::unit_variant(#name)));
                    continue;
                }
                let Some(inner) = fields_schema(private, ident, &attrs, &variant.fields, true)
                else {
                    return anything;
                };
                variants.push(quote!(#schema::tagged(#name, #inner)));
            }
            quote!(#schema::one_of(::std::vec![#(#variants),*]))
        }
        Data::Union(_) => anything,
    }
}

/// The schema of one variant's content (what an event enum stores as the payload), or `{}`
/// where it cannot be exact.
pub(crate) fn variant_body(
    private: &TokenStream,
    input: &DeriveInput,
    variant: &syn::Variant,
) -> TokenStream {
    let schema = quote!(#private::shape::schema);
    let container = serde(&input.attrs);
    let attrs = serde(&variant.attrs);
    if container.opaque || attrs.opaque {
        return quote!(#schema::any());
    }
    fields_schema(private, &input.ident, &attrs, &variant.fields, true)
        .unwrap_or_else(|| quote!(#schema::any()))
}

/// The schema of a struct's (or a variant's) fields; `None` if it cannot be exact.
fn fields_schema(
    private: &TokenStream,
    owner: &Ident,
    container: &Serde,
    fields: &Fields,
    variant: bool,
) -> Option<TokenStream> {
    let schema = quote!(#private::shape::schema);
    // The field's `json_schema` function, as a `fn() -> Value`.
    let field_fn = |ty: &Type, attrs: &Serde| {
        if attrs.opaque || mentions(ty.to_token_stream(), owner) {
            quote!(#schema::any as #schema::Of)
        } else {
            quote!(<#ty as #private::Shape>::json_schema as #schema::Of)
        }
    };
    let field_schema = |ty: &Type, attrs: &Serde| {
        let function = field_fn(ty, attrs);
        quote!((#function)())
    };
    match fields {
        Fields::Unit => Some(quote!(#schema::null())),
        Fields::Unnamed(unnamed) => {
            let wire: Vec<_> = unnamed
                .unnamed
                .iter()
                .map(|field| (field, serde(&field.attrs)))
                .filter(|(_, attrs)| !attrs.skip)
                .collect();
            if wire.iter().any(|(_, attrs)| attrs.opaque) {
                return None;
            }
            match wire.as_slice() {
                [(field, attrs)] => Some(field_schema(&field.ty, attrs)),
                _ if container.transparent => None,
                _ => {
                    let items = wire
                        .iter()
                        .map(|(field, attrs)| field_schema(&field.ty, attrs));
                    let len = wire.len();
                    Some(quote!(#private::serde_json::json!({
                        "type": "array",
                        "prefixItems": [#((#items)),*],
                        "items": false,
                        "minItems": #len,
                    })))
                }
            }
        }
        Fields::Named(named) => {
            let mut properties = Vec::new();
            let mut required = Vec::new();
            for field in &named.named {
                let attrs = serde(&field.attrs);
                if attrs.skip {
                    continue;
                }
                if attrs.opaque {
                    return None;
                }
                if container.transparent {
                    return Some(field_schema(&field.ty, &attrs));
                }
                let name = field.ident.as_ref()?.to_string();
                let name = attrs.rename.clone().unwrap_or_else(|| {
                    container
                        .rename_all
                        .as_deref()
                        .and_then(|rule| rename(&name, rule, false))
                        .unwrap_or(name)
                });
                if !(attrs.default
                    || container.default
                    || attrs.skip_serializing_if
                    || is_option(&field.ty))
                {
                    required.push(name.clone());
                }
                let function = field_fn(&field.ty, &attrs);
                properties.push(quote!((#name, #function)));
            }
            // A variant's fields do not take the enum's `deny_unknown_fields`; a struct's do.
            let closed = container.deny_unknown_fields && !variant;
            Some(quote!(#schema::object(&[#(#properties),*], &[#(#required),*], #closed)))
        }
    }
}

/// serde's `rename_all` rules, applied at expansion time.
fn rename(name: &str, rule: &str, variant: bool) -> Option<String> {
    let words: Vec<String> = if variant {
        let mut words: Vec<String> = Vec::new();
        for c in name.chars() {
            if c.is_uppercase() || words.is_empty() {
                words.push(String::new());
            }
            if let Some(word) = words.last_mut() {
                word.extend(c.to_lowercase());
            }
        }
        words
    } else {
        name.split('_').map(str::to_owned).collect()
    };
    let capitalize = |word: &String| {
        let mut chars = word.chars();
        chars.next().map_or_else(String::new, |first| {
            first.to_uppercase().chain(chars).collect()
        })
    };
    Some(match rule {
        "lowercase" => words.concat(),
        "UPPERCASE" => words.concat().to_uppercase(),
        "PascalCase" => words.iter().map(capitalize).collect(),
        "camelCase" => {
            let pascal: String = words.iter().map(capitalize).collect();
            let mut chars = pascal.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_lowercase().chain(chars).collect()
            })
        }
        "snake_case" => words.join("_"),
        "SCREAMING_SNAKE_CASE" => words.join("_").to_uppercase(),
        "kebab-case" => words.join("-"),
        "SCREAMING-KEBAB-CASE" => words.join("-").to_uppercase(),
        _ => return None,
    })
}

/// `Option<..>` (serde reads a missing `Option` field as `None`).
fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Option"),
        _ => false,
    }
}

fn mentions(tokens: TokenStream, ident: &Ident) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(found) => found == *ident,
        proc_macro2::TokenTree::Group(group) => mentions(group.stream(), ident),
        proc_macro2::TokenTree::Punct(_) | proc_macro2::TokenTree::Literal(_) => false,
    })
}
