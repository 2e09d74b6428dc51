//! Schema fingerprints: a stable identifier of a type's serialized shape.
//!
//! The shape is written out canonically (the `serde` attributes of the type, then each field's
//! `serde` attributes, name and type, as tokens: formatting and comments do not count) and
//! hashed with 64-bit FNV-1a. Any change that could change the serialized form changes the
//! fingerprint; a few that could not (renaming a type alias) change it too, which only costs a
//! refold. Events and aggregate states are fingerprinted the same way.
//!
//! The canonical text is also what the schema lock stores, and [`Shape::parse`] reads it back,
//! so that a mismatch can be explained field by field.

use std::fmt;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Attribute, Data, DeriveInput, Fields, Variant};

/// The fingerprint of a canonical shape text.
pub(crate) fn hash(shape: &str) -> String {
    format!("{:016x}", fnv1a64(shape.as_bytes()))
}

/// A struct's (or an event enum variant's) serialized shape: its `serde` attributes and its
/// fields, as canonical text.
///
/// Displays as e.g. `#[serde(rename_all="camelCase")]{owner:String;#[serde(default)]limit:u64}`,
/// `(u64;String)` for a tuple struct and `unit` for a unit struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// The type's `serde` attributes, concatenated.
    pub(crate) attrs: String,
    pub(crate) kind: Kind,
    pub(crate) fields: Vec<FieldShape>,
}

/// How a unit struct is written (it serializes as `null`, unlike `struct A();` as `[]`).
const UNIT: &str = "unit";

/// Named (`{..}`), tuple (`(..)`) or unit struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Named,
    Tuple,
    Unit,
}

/// One field: its `serde` attributes, its name (none in a tuple struct) and its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldShape {
    pub(crate) attrs: String,
    pub(crate) name: Option<String>,
    pub(crate) ty: String,
}

impl Shape {
    /// The shape of a derive input (a non-struct has only its attributes: it is rejected before
    /// its shape matters).
    pub(crate) fn of(input: &DeriveInput) -> Shape {
        let fields = match &input.data {
            Data::Struct(data) => &data.fields,
            Data::Enum(_) | Data::Union(_) => &Fields::Unit,
        };
        Shape::new(serde_attrs(&input.attrs), fields)
    }

    /// The shape of one variant of an enum of events: the same as the equivalent struct's,
    /// with the enum's `serde` attributes and then the variant's in place of the struct's.
    pub(crate) fn of_variant(input: &DeriveInput, variant: &Variant) -> Shape {
        let attrs = serde_attrs(&input.attrs) + &serde_attrs(&variant.attrs);
        Shape::new(attrs, &variant.fields)
    }

    fn new(attrs: String, fields: &Fields) -> Shape {
        let kind = match fields {
            Fields::Named(_) => Kind::Named,
            Fields::Unnamed(_) => Kind::Tuple,
            Fields::Unit => Kind::Unit,
        };
        let fields = fields
            .iter()
            .map(|field| FieldShape {
                attrs: serde_attrs(&field.attrs),
                name: field.ident.as_ref().map(ToString::to_string),
                ty: canonical(field.ty.to_token_stream()),
            })
            .collect();
        Shape {
            attrs,
            kind,
            fields,
        }
    }

    /// Reads back the text written by `Display`; `None` if it is not such a text.
    pub(crate) fn parse(text: &str) -> Option<Shape> {
        let (attrs, rest) = split_attrs(text)?;
        let (kind, body) = match rest.chars().next() {
            Some('u') if rest == UNIT => (Kind::Unit, ""),
            Some('{') => (Kind::Named, rest.strip_prefix('{')?.strip_suffix('}')?),
            Some('(') => (Kind::Tuple, rest.strip_prefix('(')?.strip_suffix(')')?),
            Some(_) | None => return None,
        };
        let mut fields = Vec::new();
        if kind != Kind::Unit && !body.is_empty() {
            for field in split_top_level(body, ';') {
                let (attrs, rest) = split_attrs(field)?;
                let (name, ty) = match kind {
                    Kind::Named => {
                        let (name, ty) = rest.split_once(':')?;
                        (Some(name.to_owned()), ty)
                    }
                    _ => (None, rest),
                };
                if ty.is_empty() {
                    return None;
                }
                fields.push(FieldShape {
                    attrs: attrs.to_owned(),
                    name,
                    ty: ty.to_owned(),
                });
            }
        }
        Some(Shape {
            attrs: attrs.to_owned(),
            kind,
            fields,
        })
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.attrs)?;
        let (open, close) = match self.kind {
            Kind::Named => ("{", "}"),
            Kind::Tuple => ("(", ")"),
            Kind::Unit => return f.write_str(UNIT),
        };
        f.write_str(open)?;
        for (index, field) in self.fields.iter().enumerate() {
            if index > 0 {
                f.write_str(";")?;
            }
            f.write_str(&field.attrs)?;
            if let Some(name) = &field.name {
                write!(f, "{name}:")?;
            }
            f.write_str(&field.ty)?;
        }
        f.write_str(close)
    }
}

/// The canonical text of any derive input (a nested type deriving `Shape`): a struct's as
/// [`Shape`]'s; an enum's as `<attrs>enum{<variant attrs><Name><shape>|...}`.
pub(crate) fn local_text(input: &DeriveInput) -> String {
    match &input.data {
        Data::Enum(data) => {
            let variants: Vec<String> = data
                .variants
                .iter()
                .map(|variant| {
                    let shape = Shape::new(serde_attrs(&variant.attrs), &variant.fields);
                    format!("{}", VariantText(&variant.ident, &shape))
                })
                .collect();
            format!(
                "{}enum{{{}}}",
                serde_attrs(&input.attrs),
                variants.join("|")
            )
        }
        Data::Struct(_) | Data::Union(_) => Shape::of(input).to_string(),
    }
}

/// A variant as `<attrs><Name><fields>`.
struct VariantText<'a>(&'a syn::Ident, &'a Shape);

impl fmt::Display for VariantText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let VariantText(ident, shape) = self;
        f.write_str(&shape.attrs)?;
        write!(f, "{ident}")?;
        let bare = Shape {
            attrs: String::new(),
            kind: shape.kind,
            fields: shape.fields.clone(),
        };
        if shape.kind == Kind::Unit {
            return Ok(());
        }
        write!(f, "{bare}")
    }
}

/// The types of the fields that are on the wire (not `#[serde(skip)]`), whose own shapes a
/// deep fingerprint folds in. A type that names `owner` itself (`kids: Vec<Tree>` in `Tree`)
/// is left out: its text is in the owner's, and folding it in would define the fingerprint by
/// itself, which the compiler rejects as a cycle.
pub(crate) fn wire_types<'a>(fields: &'a Fields, owner: &syn::Ident) -> Vec<&'a syn::Type> {
    fields
        .iter()
        .filter(|field| !is_skipped(&field.attrs) && !mentions(field.ty.to_token_stream(), owner))
        .map(|field| &field.ty)
        .collect()
}

/// Whether `tokens` contain the identifier `ident`.
fn mentions(tokens: TokenStream, ident: &syn::Ident) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(found) => found == *ident,
        proc_macro2::TokenTree::Group(group) => mentions(group.stream(), ident),
        proc_macro2::TokenTree::Punct(_) | proc_macro2::TokenTree::Literal(_) => false,
    })
}

/// Whether `#[serde(skip)]` (or `skip_serializing` and `skip_deserializing`) is written.
fn is_skipped(attrs: &[Attribute]) -> bool {
    let keys = crate::internals::attr::serde_keys(attrs);
    let has = |key: &str| keys.iter().any(|k| k.is_ident(key));
    has("skip") || (has("skip_serializing") && has("skip_deserializing"))
}

/// A `const` expression of the deep fingerprint: the hash of `text`, with each of `types`'s
/// `Shape::SHAPE_FINGERPRINT` folded in, in order. Each type's term is spanned at the type, so
/// that a type without `Shape` is reported at the field.
pub(crate) fn deep_expr(private: &TokenStream, text: &str, types: &[&syn::Type]) -> TokenStream {
    let mixes = types.iter().map(|ty| {
        quote::quote_spanned! {syn::spanned::Spanned::span(ty)=>
            let hash = #private::shape_mix(hash, <#ty as #private::Shape>::SHAPE_FINGERPRINT);
        }
    });
    quote::quote! {{
        let hash = #private::shape_hash(#text);
        #(#mixes)*
        hash
    }}
}

/// Splits leading `#[...]` attributes off `text`.
fn split_attrs(text: &str) -> Option<(&str, &str)> {
    let mut end = 0;
    while text[end..].starts_with("#[") {
        end += closing(&text[end + 1..])? + 2;
    }
    Some(text.split_at(end))
}

/// The byte index of the bracket closing the one `text` starts with.
fn closing(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (index, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits at `separator` outside brackets (`[u8;4]` holds a `;`).
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (index, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => {
                parts.push(&text[start..index]);
                start = index + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn serde_attrs(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
        .map(|attr| canonical(attr.to_token_stream()))
        .collect()
}

/// Tokens without whitespace, so that only the tokens themselves count.
fn canonical(tokens: TokenStream) -> String {
    tokens
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::{Kind, Shape};

    fn shape(source: &str) -> Shape {
        match syn::parse_str(source) {
            Ok(input) => Shape::of(&input),
            Err(error) => panic!("bad test input: {error}"),
        }
    }

    #[test]
    fn shapes_read_back_what_they_write() {
        for source in [
            "struct A { sku: String, qty: u32 }",
            "#[serde(rename_all = \"camelCase\")] struct A { #[serde(default)] #[serde(rename = \"q\")] qty: Option<u32>, map: HashMap<String, [u8; 4]> }",
            "struct T(u8, Vec<(u8, u16)>);",
            "struct U;",
            "struct E {}",
            "#[serde(tag = \"t\")] struct U;",
        ] {
            let shape = shape(source);
            let text = shape.to_string();
            assert_eq!(Shape::parse(&text), Some(shape), "{text}");
        }
    }

    #[test]
    fn the_text_is_compact() {
        let shape = shape(
            "#[serde(deny_unknown_fields)] struct A { sku: String, #[serde(default)] qty: u32 }",
        );
        assert_eq!(
            shape.to_string(),
            "#[serde(deny_unknown_fields)]{sku:String;#[serde(default)]qty:u32}"
        );
        assert_eq!(shape.kind, Kind::Named);
    }

    #[test]
    fn a_variant_has_the_shape_of_the_equivalent_struct() {
        let input: syn::DeriveInput = match syn::parse_str(
            "enum E { A { #[serde(default)] sku: String, qty: u32 }, B(u8, String), C }",
        ) {
            Ok(input) => input,
            Err(error) => panic!("bad test input: {error}"),
        };
        let syn::Data::Enum(data) = &input.data else {
            panic!("an enum")
        };
        let variants: Vec<Shape> = data
            .variants
            .iter()
            .map(|variant| Shape::of_variant(&input, variant))
            .collect();
        assert_eq!(
            variants,
            [
                shape("struct A { #[serde(default)] sku: String, qty: u32 }"),
                shape("struct B(u8, String);"),
                shape("struct C;"),
            ]
        );
        // The enum's `serde` attributes come first, then the variant's.
        let input: syn::DeriveInput = match syn::parse_str(
            "#[serde(deny_unknown_fields)] enum E { #[serde(rename_all = \"camelCase\")] A { a_b: u8 } }",
        ) {
            Ok(input) => input,
            Err(error) => panic!("bad test input: {error}"),
        };
        let syn::Data::Enum(data) = &input.data else {
            panic!("an enum")
        };
        assert_eq!(
            Shape::of_variant(&input, &data.variants[0]).to_string(),
            "#[serde(deny_unknown_fields)]#[serde(rename_all=\"camelCase\")]{a_b:u8}"
        );
    }

    #[test]
    fn garbage_does_not_parse() {
        for text in ["{a:u8", "x", "#[serde(", "{a}", "(;)", ""] {
            assert_eq!(Shape::parse(text), None, "{text}");
        }
    }
}
