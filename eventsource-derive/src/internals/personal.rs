//! Reads and checks `#[personal(subject = <field>)]` on the fields of a struct event.
//!
//! A personal field has type `Personal<T>` and names the field that identifies its data
//! subject; the repository marks the value with that subject's id (the subject field's
//! `Display` form) so that the store can seal it with the subject's key.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{DeriveInput, Ident};

use crate::internals::ctxt::Ctxt;

/// `#[personal(...)]`.
pub(crate) const PERSONAL: &str = "personal";
const PERSONAL_KEYS: &[&str] = &["subject"];

/// One checked personal field.
pub(crate) struct PersonalField<'a> {
    /// The field.
    pub(crate) field: &'a Ident,
    /// The field naming its subject.
    pub(crate) subject: Ident,
}

/// The personal fields of `input`, every mistake recorded in `cx`.
pub(crate) fn fields<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Vec<PersonalField<'a>> {
    let syn::Data::Struct(data) = &input.data else {
        return Vec::new();
    };
    let named: Vec<&syn::Field> = data.fields.iter().collect();
    let mut found = Vec::new();
    for field in &named {
        let attrs: Vec<&syn::Attribute> = field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident(PERSONAL))
            .collect();
        let personal_type = is_personal_type(&field.ty);
        let Some(attr) = attrs.first() else {
            check_undeclared(cx, field, personal_type);
            continue;
        };
        if let Some(second) = attrs.get(1) {
            cx.error_spanned_by(second, "duplicate `#[personal(...)]` attribute");
        }
        let Some(ident) = &field.ident else {
            cx.error_spanned_by(
                attr,
                "`#[personal(...)]` is for named fields: the field's name is its place in the payload",
            );
            continue;
        };
        let Some(subject) = parse(cx, attr) else {
            continue;
        };
        check_type(cx, field, personal_type);
        check_serde(cx, field);
        check_subject(cx, &named, ident, &subject);
        found.push(PersonalField {
            field: ident,
            subject,
        });
    }
    if !found.is_empty() {
        check_container_serde(cx, input);
    }
    found
}

/// `subject = <field>`, the only key.
fn parse(cx: &Ctxt, attr: &syn::Attribute) -> Option<Ident> {
    let mut subject: Option<Ident> = None;
    let result = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("subject") {
            let value: Ident = meta.value()?.parse()?;
            if subject.is_some() {
                cx.error_spanned_by(&meta.path, "duplicate key `subject` in `#[personal(...)]`");
            } else {
                subject = Some(value);
            }
            Ok(())
        } else {
            let key = meta.path.to_token_stream().to_string();
            Err(meta.error(format!(
                "unknown key `{key}` in `#[personal(...)]`; valid keys: {}",
                PERSONAL_KEYS
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    });
    if let Err(error) = result {
        cx.syn_error(error);
        return None;
    }
    if subject.is_none() {
        cx.error_spanned_by(
            attr,
            "`#[personal(...)]` needs the field that names the data subject: `#[personal(subject = customer_id)]`",
        );
    }
    subject
}

/// Whether `ty` is written `Personal<..>` (any path ending in it).
pub(crate) fn is_personal_type(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(path)
        if path.qself.is_none()
            && path.path.segments.last().is_some_and(|s| s.ident == "Personal"))
}

// A `Personal<T>` field without `#[personal]` would have no subject to be sealed for, and the
// append would fail at run time: `email: Personal<String>` needs
// `#[personal(subject = customer_id)]`.
fn check_undeclared(cx: &Ctxt, field: &syn::Field, personal_type: bool) {
    if personal_type {
        let name = field
            .ident
            .as_ref()
            .map_or_else(|| "this field".to_owned(), |i| format!("field `{i}`"));
        cx.error_spanned_by(
            &field.ty,
            format!(
                "{name} is a `Personal` value without a subject: declare it `#[personal(subject = <field>)]`"
            ),
        );
    }
}

// A personal field holds a `Personal<T>`, the type that can read back as forgotten:
// `#[personal(subject = id)] email: String` is an error.
fn check_type(cx: &Ctxt, field: &syn::Field, personal_type: bool) {
    if !personal_type {
        cx.error_spanned_by(
            &field.ty,
            "a `#[personal(...)]` field has type `Personal<T>`, which reads back as `Personal::Forgotten` once its subject is forgotten",
        );
    }
}

// The field's name is its place in the payload: `#[serde(rename = "..")]`, `flatten` or
// `skip` on a personal field would move or hide it.
fn check_serde(cx: &Ctxt, field: &syn::Field) {
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        cx.error_spanned_by(
            attr,
            "a `#[personal(...)]` field keeps its own name in the payload: remove `#[serde(...)]` from it",
        );
    }
}

// `#[serde(rename_all = "..")]` on the struct renames the personal fields in the payload.
fn check_container_serde(cx: &Ctxt, input: &DeriveInput) {
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let tokens = attr.meta.to_token_stream().to_string();
        if tokens.contains("rename_all") {
            cx.error_spanned_by(
                attr,
                "an event with `#[personal(...)]` fields keeps its field names in the payload: remove `rename_all`",
            );
        }
    }
}

// The subject is another, non-personal field of the struct: `#[personal(subject = email)]`
// on `email`, or naming a missing field, is an error.
fn check_subject(cx: &Ctxt, fields: &[&syn::Field], field: &Ident, subject: &Ident) {
    if subject == field {
        cx.error_spanned_by(subject, "a personal field cannot be its own subject");
        return;
    }
    match fields.iter().find(|f| f.ident.as_ref() == Some(subject)) {
        None => cx.error_spanned_by(
            subject,
            format!("`#[personal(subject = {subject})]`: the struct has no field `{subject}`"),
        ),
        Some(f) if is_personal_type(&f.ty) => cx.error_spanned_by(
            subject,
            format!("the subject `{subject}` is itself personal: name a pseudonymous id field"),
        ),
        Some(_) => {}
    }
}

/// The body of `fn personal_fields(&self, out)`; empty without personal fields.
pub(crate) fn personal_fields_body(private: &TokenStream, fields: &[PersonalField]) -> TokenStream {
    let pushes = fields.iter().map(|PersonalField { field, subject }| {
        let name = field.to_string();
        let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
        quote::quote! {
            out.push(#private::PersonalField {
                field: #name,
                subject: ::std::string::ToString::to_string(&self.#subject),
            });
        }
    });
    quote::quote!(#(#pushes)*)
}
