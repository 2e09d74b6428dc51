//! Command fingerprints: how a repeated idempotency key tells the same command from a
//! different one.
//!
//! See [`CommandFingerprint`] for the rule.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// What identifies a command for idempotency: its name and, where possible, a digest of its
/// content.
///
/// # The rule
///
/// A fingerprint is the command's **name** (the variant of the aggregate's command enum, e.g.
/// `Deposit`) and, where the command implements `serde::Serialize`, a **digest** of its JSON
/// form (object keys sorted at every level, so a map's iteration order does not matter).
/// A command without `Serialize` is compared by name only: derive `Serialize` on it to have
/// its content compared too.
///
/// Two fingerprints [match](CommandFingerprint::matches) when the names are equal and, if both
/// have a digest, the digests are equal. `#[derive(Aggregate)]` computes the fingerprint for
/// every command ([`Aggregate::command_fingerprint`](crate::Aggregate::command_fingerprint));
/// a hand-written aggregate may override that method, and
/// [`CommandMetadata::command_fingerprint`](crate::CommandMetadata::command_fingerprint)
/// replaces it for one execution ([`CommandFingerprint::hashed`] digests a `Hash` value for
/// such cases).
///
/// What to keep stable: a command's name and its serialized form. Renaming a command, or
/// changing its serialized shape, makes a retry of an execution stored before the change
/// [`IdempotencyKeyReused`](crate::ExecuteError::IdempotencyKeyReused). A field that should
/// not count (a client timestamp, a trace id) belongs in the metadata, or is skipped with
/// `#[serde(skip_serializing)]`. A value that serializes differently each time (a `HashSet`,
/// whose JSON is a list in iteration order) must not be part of a serialized command.
///
/// Digests are SHA-1 based (UUID v5): stable across processes, builds and platforms, which
/// matters because they are stored in the events and compared with retries sent years later.
///
/// Stored in the metadata of the events a keyed command writes
/// ([`Metadata::command`](crate::Metadata::command)).
///
/// ```
/// # use eventsource_core::CommandFingerprint;
/// let a = CommandFingerprint::serialized("Deposit", &serde_json::json!({ "amount": 5 }));
/// let b = CommandFingerprint::serialized("Deposit", &serde_json::json!({ "amount": 6 }));
/// assert!(!a.matches(&b));
/// assert!(a.matches(&CommandFingerprint::named("Deposit")), "no digest: names only");
/// assert!(!a.matches(&CommandFingerprint::named("Withdraw")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommandFingerprint {
    /// The command's name, e.g. `Deposit`.
    pub name: String,
    /// A digest of the command's content (`json:<hex>` or `hash:<hex>`), if it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl CommandFingerprint {
    /// A fingerprint of the name only: every command of that name matches it.
    pub fn named(name: impl Into<String>) -> Self {
        CommandFingerprint {
            name: name.into(),
            digest: None,
        }
    }

    /// The name and a digest of `content`'s JSON form (object keys sorted). A value that
    /// cannot be serialized gets no digest.
    pub fn serialized<T: Serialize + ?Sized>(name: impl Into<String>, content: &T) -> Self {
        let digest = serde_json::to_value(content).ok().map(|value| {
            let mut canonical = Vec::with_capacity(64);
            write_canonical(&value, &mut canonical);
            digest("json", &canonical)
        });
        CommandFingerprint {
            name: name.into(),
            digest,
        }
    }

    /// The name and a digest of what `content` feeds a hasher (integers little-endian at a
    /// fixed width, so the digest is the same on every platform). It relies on the standard
    /// library's `Hash` impls, which Rust does not promise to keep byte-for-byte across
    /// releases: prefer [`serialized`](Self::serialized) for fingerprints stored for long.
    pub fn hashed<T: Hash + ?Sized>(name: impl Into<String>, content: &T) -> Self {
        let mut hasher = StableHasher(Vec::with_capacity(64));
        content.hash(&mut hasher);
        CommandFingerprint {
            name: name.into(),
            digest: Some(digest("hash", &hasher.0)),
        }
    }

    /// Whether `other` is the same command: equal names and, when both have one, equal digests.
    pub fn matches(&self, other: &CommandFingerprint) -> bool {
        self.name == other.name
            && match (&self.digest, &other.digest) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for CommandFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = crate::limits::excerpt(&self.name);
        match &self.digest {
            Some(digest) => write!(f, "`{name}` ({})", crate::limits::excerpt(digest)),
            None => write!(f, "`{name}`"),
        }
    }
}

/// Namespace of the content digests.
const DIGEST_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7473_6f75_7263_652d_6469_6765);

fn digest(method: &str, bytes: &[u8]) -> String {
    format!(
        "{method}:{}",
        Uuid::new_v5(&DIGEST_NAMESPACE, bytes).simple()
    )
}

/// JSON with object keys sorted at every level, whatever order the map iterates in.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    // Explicit stack: a hostile command nested deeply cannot overflow ours.
    enum Step<'a> {
        Value(&'a Value),
        Raw(&'static [u8]),
        Key(&'a str),
    }
    let mut stack = vec![Step::Value(value)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Raw(bytes) => out.extend_from_slice(bytes),
            Step::Key(key) => {
                // Writing a string to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
            }
            Step::Value(Value::Array(items)) => {
                out.push(b'[');
                stack.push(Step::Raw(b"]"));
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push(Step::Value(item));
                    if i > 0 {
                        stack.push(Step::Raw(b","));
                    }
                }
            }
            Step::Value(Value::Object(map)) => {
                out.push(b'{');
                stack.push(Step::Raw(b"}"));
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (i, (key, item)) in entries.into_iter().enumerate().rev() {
                    stack.push(Step::Value(item));
                    stack.push(Step::Key(key));
                    if i > 0 {
                        stack.push(Step::Raw(b","));
                    }
                }
            }
            Step::Value(scalar) => {
                let _ = serde_json::to_writer(&mut *out, scalar);
            }
        }
    }
}

/// Collects what a `Hash` impl writes, integers little-endian at a fixed width.
struct StableHasher(Vec<u8>);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        // Only the bytes are used (through `digest`); `finish` is never called for that.
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn write_u8(&mut self, i: u8) {
        self.0.push(i);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_i8(&mut self, i: i8) {
        self.write(&i.to_le_bytes());
    }
    fn write_i16(&mut self, i: i16) {
        self.write(&i.to_le_bytes());
    }
    fn write_i32(&mut self, i: i32) {
        self.write(&i.to_le_bytes());
    }
    fn write_i64(&mut self, i: i64) {
        self.write(&i.to_le_bytes());
    }
    fn write_i128(&mut self, i: i128) {
        self.write(&i.to_le_bytes());
    }
    fn write_isize(&mut self, i: isize) {
        self.write_i64(i as i64);
    }
}

/// How `#[derive(Aggregate)]` digests a command without knowing whether it implements
/// `Serialize`: method resolution tries `FingerprintBySerialize` (on `&Probe`) first, then
/// `FingerprintByName` (on `Probe`); an impl whose bound does not hold is skipped. Generated
/// code calls `(&&FingerprintProbe(command)).command_fingerprint(name)`.
#[doc(hidden)]
pub struct FingerprintProbe<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait FingerprintBySerialize {
    fn command_fingerprint(&self, name: &'static str) -> CommandFingerprint;
}

impl<T: Serialize + ?Sized> FingerprintBySerialize for &FingerprintProbe<'_, T> {
    fn command_fingerprint(&self, name: &'static str) -> CommandFingerprint {
        CommandFingerprint::serialized(name, self.0)
    }
}

#[doc(hidden)]
pub trait FingerprintByName {
    fn command_fingerprint(&self, name: &'static str) -> CommandFingerprint;
}

impl<T: ?Sized> FingerprintByName for FingerprintProbe<'_, T> {
    fn command_fingerprint(&self, name: &'static str) -> CommandFingerprint {
        CommandFingerprint::named(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[derive(Serialize)]
    struct Serializable {
        amount: u64,
    }
    #[derive(Hash)]
    struct HashOnly;

    #[allow(unused_imports)]
    use super::{FingerprintByName as _, FingerprintBySerialize as _};

    #[test]
    // The borrows choose the impl (what clippy calls needless is the point of the probe).
    #[allow(clippy::needless_borrow)]
    fn the_probe_digests_serializable_commands_and_names_the_others() {
        let serializable =
            (&&FingerprintProbe(&Serializable { amount: 1 })).command_fingerprint("S");
        assert_eq!(
            serializable,
            CommandFingerprint::serialized("S", &json!({ "amount": 1 }))
        );
        let named = (&&FingerprintProbe(&HashOnly)).command_fingerprint("N");
        assert_eq!(named, CommandFingerprint::named("N"));
    }

    #[test]
    fn digests_ignore_map_order_and_tell_contents_apart() {
        let mut a = HashMap::new();
        let mut b = HashMap::new();
        for i in 0..50 {
            a.insert(format!("k{i}"), i);
        }
        for i in (0..50).rev() {
            b.insert(format!("k{i}"), i);
        }
        let fa = CommandFingerprint::serialized("C", &a);
        assert_eq!(fa, CommandFingerprint::serialized("C", &b));
        b.insert("k0".into(), 99);
        assert!(!fa.matches(&CommandFingerprint::serialized("C", &b)));
        let nested = json!({ "b": [1, { "y": 2, "x": [true, null, "s"] }], "a": 1.5 });
        let mut canonical = Vec::new();
        write_canonical(&nested, &mut canonical);
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            r#"{"a":1.5,"b":[1,{"x":[true,null,"s"],"y":2}]}"#
        );
    }

    #[test]
    fn digests_are_stable_values() {
        // Stored in events and compared with retries sent by other processes, platforms and
        // builds, years later: a change here breaks every retry of an older command.
        assert_eq!(
            CommandFingerprint::serialized("Deposit", &json!({ "amount": 5 })).digest,
            Some("json:9c214d32454f5ea0a15fdbed0883d1d0".to_owned())
        );
        assert_eq!(
            CommandFingerprint::hashed("Deposit", &(5u64, "a", -1i32, 7usize)).digest,
            Some("hash:4445c8109f855007bcb641eccc1c46fc".to_owned())
        );
    }

    #[test]
    fn matching_needs_equal_names_and_equal_digests_where_both_exist() {
        let five = CommandFingerprint::hashed("Add", &5u64);
        assert!(five.matches(&CommandFingerprint::hashed("Add", &5u64)));
        assert!(!five.matches(&CommandFingerprint::hashed("Add", &6u64)));
        assert!(!five.matches(&CommandFingerprint::hashed("Sub", &5u64)));
        assert!(five.matches(&CommandFingerprint::named("Add")));
        assert!(CommandFingerprint::named("Add").matches(&five));
    }
}
