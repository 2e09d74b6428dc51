//! Schema fingerprints: a stable identifier of a type's serialized shape.
//!
//! The shape is written out canonically (the `serde` attributes of the type, then each field's
//! `serde` attributes, name and type, as tokens: formatting and comments do not count) and
//! hashed with 64-bit FNV-1a. Any change that could change the serialized form changes the
//! fingerprint; a few that could not (renaming a type alias) change it too, which only costs a
//! refold. The function takes any struct, so that events can be fingerprinted the same way.

use quote::ToTokens;
use syn::{Attribute, Data, DeriveInput, Fields};

/// The fingerprint of `input`'s shape: 16 lowercase hex digits.
pub(crate) fn fingerprint(input: &DeriveInput) -> String {
    format!("{:016x}", fnv1a64(shape(input).as_bytes()))
}

/// The canonical text the fingerprint hashes, e.g. `{balance:u64;owner:String}`.
pub(crate) fn shape(input: &DeriveInput) -> String {
    let mut out = serde_attrs(&input.attrs);
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        // Only structs are fingerprinted; other shapes are rejected before this is asked.
        Data::Enum(_) | Data::Union(_) => return out,
    };
    let (open, close) = match fields {
        Fields::Named(_) => ('{', '}'),
        Fields::Unnamed(_) => ('(', ')'),
        Fields::Unit => return out,
    };
    out.push(open);
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(';');
        }
        out.push_str(&serde_attrs(&field.attrs));
        if let Some(ident) = &field.ident {
            out.push_str(&ident.to_string());
            out.push(':');
        }
        out.push_str(&canonical(field.ty.to_token_stream()));
    }
    out.push(close);
    out
}

fn serde_attrs(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
        .map(|attr| canonical(attr.to_token_stream()))
        .collect()
}

/// Tokens without whitespace, so that only the tokens themselves count.
fn canonical(tokens: proc_macro2::TokenStream) -> String {
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
