//! Sealing and opening one value: XChaCha20-Poly1305, a random nonce per value, associated
//! data binding subject, key version, event id and field path.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::Value;
use uuid::Uuid;

use super::keys::SubjectKey;
use super::value::SEALED_PREFIX;

/// The longest subject id sealed (bytes): it is stored in every sealed value.
pub(crate) const MAX_SUBJECT_LEN: usize = 256;
const NONCE_LEN: usize = 24;
const VERSION_TAG: &str = "v1";

/// A sealed string, parsed (not yet opened).
pub(crate) struct Sealed {
    pub(crate) key_version: u32,
    pub(crate) subject: String,
    blob: Vec<u8>,
}

/// Why a value was not sealed; never carries the value or the key.
#[derive(Debug)]
pub(crate) enum SealFailure {
    Serialize,
    Encrypt,
}

/// Encrypts `plaintext` for `subject` with `key`, bound to `event_id` and `path`.
pub(crate) fn seal(
    key: &SubjectKey,
    subject: &str,
    event_id: Uuid,
    path: &str,
    plaintext: &Value,
) -> Result<String, SealFailure> {
    let message =
        zeroize::Zeroizing::new(serde_json::to_vec(plaintext).map_err(|_| SealFailure::Serialize)?);
    let cipher = XChaCha20Poly1305::new(key.material().into());
    let nonce = XNonce::try_generate().map_err(|_| SealFailure::Encrypt)?;
    let aad = associated_data(subject, key.version(), event_id, path);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &message,
                aad: &aad,
            },
        )
        .map_err(|_| SealFailure::Encrypt)?;
    let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ciphertext);
    Ok(format!(
        "{SEALED_PREFIX}{VERSION_TAG}:{}:{}:{}",
        key.version(),
        URL_SAFE_NO_PAD.encode(subject),
        URL_SAFE_NO_PAD.encode(&blob)
    ))
}

/// Parses a sealed string; `None` when it is not one.
pub(crate) fn parse(text: &str) -> Option<Sealed> {
    let rest = text.strip_prefix(SEALED_PREFIX)?;
    let mut parts = rest.splitn(4, ':');
    if parts.next()? != VERSION_TAG {
        return None;
    }
    let key_version = parts.next()?.parse::<u32>().ok()?;
    let subject = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    let subject = String::from_utf8(subject).ok()?;
    let blob = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN || blob.len() <= NONCE_LEN {
        return None;
    }
    Some(Sealed {
        key_version,
        subject,
        blob,
    })
}

/// Decrypts `sealed` with `key`; `None` when it does not authenticate (tampered, moved, or
/// sealed with another key).
pub(crate) fn open(key: &SubjectKey, sealed: &Sealed, event_id: Uuid, path: &str) -> Option<Value> {
    let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).ok()?;
    let cipher = XChaCha20Poly1305::new(key.material().into());
    let aad = associated_data(&sealed.subject, sealed.key_version, event_id, path);
    let message = zeroize::Zeroizing::new(
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()?,
    );
    serde_json::from_slice(&message).ok()
}

fn associated_data(subject: &str, key_version: u32, event_id: Uuid, path: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + subject.len() + path.len());
    aad.extend_from_slice(b"eventsource personal v1\0");
    aad.extend_from_slice(&(subject.len() as u64).to_be_bytes());
    aad.extend_from_slice(subject.as_bytes());
    aad.extend_from_slice(&key_version.to_be_bytes());
    aad.extend_from_slice(event_id.as_bytes());
    aad.extend_from_slice(path.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_in_its_place() {
        let key = SubjectKey::generate(1).unwrap();
        let id = Uuid::now_v7();
        let text = seal(&key, "c-1", id, "/email", &Value::from("ada@example.com")).unwrap();
        assert!(!text.contains("ada"));
        let sealed = parse(&text).unwrap();
        assert_eq!(sealed.subject, "c-1");
        assert_eq!(
            open(&key, &sealed, id, "/email"),
            Some(Value::from("ada@example.com"))
        );
        assert_eq!(open(&key, &sealed, Uuid::now_v7(), "/email"), None);
        assert_eq!(open(&key, &sealed, id, "/name"), None);
        let other = SubjectKey::generate(1).unwrap();
        assert_eq!(open(&other, &sealed, id, "/email"), None);
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let key = SubjectKey::generate(1).unwrap();
        let id = Uuid::now_v7();
        let a = seal(&key, "c-1", id, "/e", &Value::from("x")).unwrap();
        let b = seal(&key, "c-1", id, "/e", &Value::from("x")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn garbage_does_not_parse() {
        for text in [
            "es:personal:",
            "es:personal:v1:1:",
            "es:personal:v2:1:YQ:AAAA",
            "es:personal:v1:x:YQ:AAAA",
            "es:personal:v1:1:YQ:AAAA",
            "es:personal:v1:1::AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
    }
}
