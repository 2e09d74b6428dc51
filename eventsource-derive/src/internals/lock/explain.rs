//! Explaining a lock mismatch: how the current shape differs from the locked one, field by
//! field, with an error at each changed token.

use std::fmt::Write as _;

use proc_macro2::TokenStream;
use quote::ToTokens;

use super::Subject;
use crate::internals::ctxt::Ctxt;
use crate::internals::fingerprint::{Kind, Shape};

/// Reports how `subject` differs from the `locked` shape, one error per change at the token
/// that changed; the first also shows both shapes and what to do.
pub(super) fn explain(cx: &Ctxt, subject: &Subject, file: &str, locked: &str) {
    let (name, version, current) = (&subject.name, subject.version, &subject.shape);
    let changes = match Shape::parse(locked) {
        Some(locked_shape) => changes(subject, &locked_shape),
        None => Vec::new(),
    };
    let changes = if changes.is_empty() {
        vec![(
            subject.ident.to_token_stream(),
            "its shape changed".to_owned(),
        )]
    } else {
        changes
    };
    for (index, (tokens, change)) in changes.into_iter().enumerate() {
        let mut message = format!("`{name}` v{version} differs from its locked shape: {change}");
        if index == 0 {
            let _ = write!(
                message,
                "\n  locked in `{file}`: {locked}\n  now: {current}\n  a stored event keeps its shape forever: restore the locked shape, and make the new one version {} with `previous = <the version {version} type>`",
                version + 1
            );
        }
        cx.error_spanned_by(tokens, message);
    }
}

/// Each difference, with the tokens to point at.
fn changes(subject: &Subject, locked: &Shape) -> Vec<(TokenStream, String)> {
    let current = &subject.shape;
    let ident = subject.ident.to_token_stream();
    let mut out = Vec::new();
    if locked.attrs != current.attrs {
        let at = subject
            .attrs
            .first()
            .map_or_else(|| ident.clone(), ToTokens::to_token_stream);
        out.push((
            at,
            format!(
                "the `serde` attributes of `{}` changed from {} to {}",
                subject.ident,
                attrs_text(&locked.attrs),
                attrs_text(&current.attrs)
            ),
        ));
    }
    if locked.kind != current.kind {
        out.push((
            ident,
            format!(
                "it changed from {} to {}",
                kind_text(locked.kind, subject.is_variant),
                kind_text(current.kind, subject.is_variant)
            ),
        ));
        return out;
    }
    let fields: Vec<&syn::Field> = subject.fields.iter().collect();
    // Fields are matched by name (by position in a tuple struct).
    let label = |index: usize, field: &crate::internals::fingerprint::FieldShape| {
        field.name.clone().unwrap_or_else(|| index.to_string())
    };
    let locked_fields: Vec<(String, _)> = locked
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| (label(i, f), f))
        .collect();
    let current_fields: Vec<(String, _, _)> = current
        .fields
        .iter()
        .zip(&fields)
        .enumerate()
        .map(|(i, (f, syn_field))| (label(i, f), f, *syn_field))
        .collect();
    let removed: Vec<_> = locked_fields
        .iter()
        .filter(|(name, _)| current_fields.iter().all(|(n, ..)| n != name))
        .collect();
    let added: Vec<_> = current_fields
        .iter()
        .filter(|(name, ..)| locked_fields.iter().all(|(n, _)| n != name))
        .collect();
    let field_at = |field: &syn::Field| {
        field
            .ident
            .as_ref()
            .map_or_else(|| field.ty.to_token_stream(), ToTokens::to_token_stream)
    };
    if let ([(old, old_field)], [(new, new_field, syn_field)]) = (&removed[..], &added[..])
        && old_field.ty == new_field.ty
        && old_field.attrs == new_field.attrs
    {
        out.push((
            field_at(syn_field),
            format!("field `{old}` was renamed to `{new}`"),
        ));
    } else {
        for (old, old_field) in &removed {
            out.push((
                ident.clone(),
                format!("field `{old}: {}` was removed", old_field.ty),
            ));
        }
        for (new, new_field, syn_field) in &added {
            out.push((
                field_at(syn_field),
                format!("field `{new}: {}` was added", new_field.ty),
            ));
        }
    }
    for (name, field, syn_field) in &current_fields {
        let Some((_, old)) = locked_fields.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if old.ty != field.ty {
            out.push((
                syn_field.ty.to_token_stream(),
                format!(
                    "field `{name}` changed type from `{}` to `{}`",
                    old.ty, field.ty
                ),
            ));
        }
        if old.attrs != field.attrs {
            let at = syn_field
                .attrs
                .iter()
                .find(|attr| attr.path().is_ident("serde"))
                .map_or_else(|| field_at(syn_field), ToTokens::to_token_stream);
            out.push((
                at,
                format!(
                    "the `serde` attributes of field `{name}` changed from {} to {}",
                    attrs_text(&old.attrs),
                    attrs_text(&field.attrs)
                ),
            ));
        }
    }
    if out.is_empty() && locked != current {
        out.push((ident, "its fields were reordered".to_owned()));
    }
    out
}

fn attrs_text(attrs: &str) -> String {
    if attrs.is_empty() {
        "none".to_owned()
    } else {
        format!("`{attrs}`")
    }
}

fn kind_text(kind: Kind, is_variant: bool) -> &'static str {
    match (kind, is_variant) {
        (Kind::Named, false) => "a struct with named fields",
        (Kind::Tuple, false) => "a tuple struct",
        (Kind::Unit, false) => "a unit struct",
        (Kind::Named, true) => "a variant with named fields",
        (Kind::Tuple, true) => "a tuple variant",
        (Kind::Unit, true) => "a unit variant",
    }
}
