//! Crypto-shredding: personal fields sealed with a key per data subject, so that deleting the
//! key ([`Shredding::forget`]) erases the data from every stored event without rewriting one.
//!
//! # The pieces
//!
//! - [`Personal<T>`]: the type of a personal field, either [`Personal::Known`] or
//!   [`Personal::Forgotten`]. Declared on an event with the subject it belongs to:
//!   `#[personal(subject = customer_id)] email: Personal<String>`.
//! - [`KeyStore`]: where the subjects' keys live ([`MemoryKeyStore`]; the PostgreSQL adapter
//!   has `PostgresKeyStore`, a table in the store's schema).
//! - [`Shredding`]: a store wrapper that seals personal fields on append and opens them on
//!   every read (loads, history, projections), with a bounded key cache.
//!
//! # Wire forms
//!
//! In memory and in snapshots a personal value is `{"$personal": <value>}`, a forgotten one
//! `{"$forgotten": true}`. The repository adds the subject (`"$subject"`) to each declared
//! field; [`Shredding`] replaces every such object with one string before the store sees it:
//!
//! ```text
//! es:personal:v1:<key version>:<subject, base64url>:<base64url(nonce ‖ ciphertext ‖ tag)>
//! ```
//!
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`, NCC Group audited) with a fresh random
//! 192-bit nonce per value, over the JSON text of the value; the associated data binds the
//! ciphertext to its subject, key version, event id and field path, so it cannot be moved to
//! another event, field or subject. The sealed paths are listed in the event's metadata under
//! [`SEALED_PATHS`], and only those are opened: a user's string that looks like a sealed value
//! stays a string.
//!
//! # What forgetting leaves
//!
//! The subject id itself (a pseudonym: keep names and addresses out of it), stream ids, event
//! names, versions, positions, times, metadata and every field not declared personal. Stream
//! ids, event names and idempotency keys are stored in plain text and indexed: no personal
//! data there. Restoring a backup taken before a `forget` brings the key back: forget again
//! (the PostgreSQL key table keeps forgotten subjects, so `forgotten_subjects` lists them).

mod cipher;
mod keys;
mod shredding;
mod value;

pub use keys::{KeyStore, MemoryKeyStore, SubjectKey};
pub use shredding::{Forgotten, Shredding};
pub use value::{Personal, PersonalField};

pub(crate) use value::contains_personal;
#[doc(hidden)]
pub use value::mark_subjects;

/// Encodes `event` with each declared personal field marked with its subject, ready for
/// [`Shredding`] to seal.
pub(crate) fn encode_marked<E: crate::EventEnum>(
    event: &E,
) -> Result<serde_json::Value, serde_json::Error> {
    let mut payload = event.encode()?;
    let mut fields = Vec::new();
    event.personal_fields(&mut fields);
    if !fields.is_empty() {
        mark_subjects(&mut payload, &fields);
    }
    Ok(payload)
}

/// The metadata field (in [`Metadata::custom`](crate::Metadata::custom)) that lists the JSON
/// pointers of an event's sealed fields.
pub const SEALED_PATHS: &str = "eventsource.sealed";

/// A sealed personal value in a stored event, as [`sealed_values`] finds it: where it is and
/// whose key seals it, not what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedValue {
    /// Its JSON pointer in the payload, e.g. `/email`.
    pub path: String,
    /// The data subject.
    pub subject: String,
    /// The version of the subject's key that sealed it.
    pub key_version: u32,
}

/// The sealed values of a stored event (read from a store without [`Shredding`]): for tools
/// that show events without opening them, such as the `eventsource` CLI.
pub fn sealed_values(record: &crate::RecordedEvent) -> Vec<SealedValue> {
    let Some(serde_json::Value::Array(paths)) = record.metadata.custom.get(SEALED_PATHS) else {
        return Vec::new();
    };
    paths
        .iter()
        .filter_map(serde_json::Value::as_str)
        .filter_map(|path| {
            let text = record.payload.pointer(path)?.as_str()?;
            let sealed = cipher::parse(text)?;
            Some(SealedValue {
                path: path.to_owned(),
                subject: sealed.subject,
                key_version: sealed.key_version,
            })
        })
        .collect()
}
