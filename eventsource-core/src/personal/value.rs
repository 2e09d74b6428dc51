//! The `Personal<T>` value and its in-memory wire form.

use std::fmt;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The key of a personal value's object form: `{"$personal": <value>}`.
pub(crate) const KNOWN: &str = "$personal";
/// The key of a forgotten value's object form: `{"$forgotten": true}`.
pub(crate) const FORGOTTEN: &str = "$forgotten";
/// The key the repository adds to a declared field: the subject it is sealed for.
pub(crate) const SUBJECT: &str = "$subject";
/// How every sealed string starts.
pub(crate) const SEALED_PREFIX: &str = "es:personal:";

/// A personal field: the value, or [`Forgotten`](Personal::Forgotten) once its subject's key
/// was deleted.
///
/// Declare it on an event with the field that names the data subject:
///
/// ```ignore
/// #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// #[event(name = "customer.registered", version = 1)]
/// pub struct Registered {
///     pub customer_id: String,
///     #[personal(subject = customer_id)]
///     pub email: Personal<String>,
/// }
/// ```
///
/// Stored through [`Shredding`](crate::Shredding), the value is encrypted with the subject's
/// key; read back after [`Shredding::forget`](crate::Shredding::forget), it is `Forgotten`:
/// a value, never an error. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Personal<T> {
    /// The value.
    Known(T),
    /// The subject was forgotten: the value is gone for good.
    Forgotten,
}

impl<T> Personal<T> {
    /// The value, if it is still known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Personal::Known(value) => Some(value),
            Personal::Forgotten => None,
        }
    }

    /// The value, if it is still known.
    pub fn into_known(self) -> Option<T> {
        match self {
            Personal::Known(value) => Some(value),
            Personal::Forgotten => None,
        }
    }

    /// Whether the subject was forgotten.
    pub fn is_forgotten(&self) -> bool {
        matches!(self, Personal::Forgotten)
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Personal::Known(value)
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Personal::Known(_) => f.write_str("Personal(<redacted>)"),
            Personal::Forgotten => f.write_str("Personal(<forgotten>)"),
        }
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Personal::Known(value) => map.serialize_entry(KNOWN, value)?,
            Personal::Forgotten => map.serialize_entry(FORGOTTEN, &true)?,
        }
        map.end()
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Object(mut object) => {
                if let Some(value) = object.remove(KNOWN) {
                    return T::deserialize(value)
                        .map(Personal::Known)
                        // Not the deserializer's message: it may quote the value.
                        .map_err(|_| D::Error::custom("a personal value of the wrong type"));
                }
                if object.contains_key(FORGOTTEN) {
                    return Ok(Personal::Forgotten);
                }
                Err(D::Error::custom(
                    "expected a personal value (`{\"$personal\": ..}` or `{\"$forgotten\": true}`)",
                ))
            }
            Value::String(text) if text.starts_with(SEALED_PREFIX) => Err(D::Error::custom(
                "a sealed personal value that was not opened: read the store through `Shredding` \
                 with the key store that sealed it (or its ciphertext does not authenticate)",
            )),
            _ => Err(D::Error::custom(
                "expected a personal value (`{\"$personal\": ..}` or `{\"$forgotten\": true}`)",
            )),
        }
    }
}

/// A declared personal field of an event: its name in the payload and its subject.
/// `#[personal(subject = ..)]` generates [`Event::personal_fields`](crate::Event::personal_fields).
#[derive(Clone, PartialEq, Eq)]
pub struct PersonalField {
    /// The field's name in the payload.
    pub field: &'static str,
    /// The data subject the value belongs to (the subject field's `Display` form).
    pub subject: String,
}

impl fmt::Debug for PersonalField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalField")
            .field("field", &self.field)
            .field("subject", &self.subject)
            .finish()
    }
}

/// Adds each declared field's subject to its `{"$personal": ..}` object in `payload`.
pub fn mark_subjects(payload: &mut Value, fields: &[PersonalField]) {
    let Value::Object(object) = payload else {
        return;
    };
    for field in fields {
        if let Some(Value::Object(value)) = object.get_mut(field.field)
            && value.contains_key(KNOWN)
        {
            value.insert(SUBJECT.to_owned(), Value::String(field.subject.clone()));
        }
    }
}

/// Whether `value` holds a personal value in its plain object form anywhere.
pub(crate) fn contains_personal(value: &Value) -> bool {
    match value {
        Value::Object(object) => is_personal(object) || object.values().any(contains_personal),
        Value::Array(items) => items.iter().any(contains_personal),
        _ => false,
    }
}

/// Whether `object` is a personal value's plain form.
pub(crate) fn is_personal(object: &Map<String, Value>) -> bool {
    object.contains_key(KNOWN)
}
