//! Deep schema shapes: a fingerprint of a type's whole serialized type tree.
//!
//! A derive macro sees only the tokens of the item it is written on: `#[derive(Event)]` on
//! `Paid { amount: Money }` knows that the field is a `Money`, not what a `Money` is. The
//! [`Shape`] trait closes that gap at compile time: every type that may appear in an event or
//! an aggregate's state has a `const` fingerprint of its shape, and a derived impl combines its
//! own canonical text (its `serde` attributes, field names and types) with the fingerprints of
//! its fields' types. The compiler's const evaluation thus computes a fingerprint that changes
//! whenever anything in the tree changes, however deep.
//!
//! `#[derive(Shape)]` implements it for your own nested structs and enums; this module
//! implements it for the standard types serde knows, `serde_json::Value`, `uuid::Uuid` and
//! `chrono`'s date and time types. A type that contains itself (`struct Tree { kids:
//! Vec<Tree> }`) derives it too: the fields that name the type itself count by their text only.
//! Types that contain each other (`A` holds a `B` that holds an `A`) cannot (each fingerprint
//! would be defined through the other, which the compiler rejects as a cycle): implement one of
//! them by hand with [`shape_hash`] of a text that describes it.

/// The fingerprint of a type's serialized shape, including every type it contains.
///
/// Derived with `#[derive(Shape)]` for nested types, and implemented by `#[derive(Event)]`,
/// `#[derive(EventEnum)]` and `#[derive(Aggregate)]` for the types they derive. Equal
/// fingerprints, same wire shape (up to a 64-bit hash collision); a different fingerprint means
/// the shape, or only its spelling (`u32` for `u64`, a renamed type alias), changed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no schema shape: it is part of an event or an aggregate's state",
    label = "`{Self}` does not implement `Shape`",
    note = "derive it where `{Self}` is defined: `#[derive(Shape, Serialize, Deserialize)]`, so that a change to `{Self}` changes the fingerprint of every event and state that contain it",
    note = "for a foreign type, wrap it in a type of your own; for types that contain each other, implement `Shape` by hand for one: `impl Shape for {Self} {{ const SHAPE_FINGERPRINT: u64 = shape_hash(\"...\"); }}`"
)]
pub trait Shape {
    /// The 64-bit fingerprint of the type's whole shape.
    const SHAPE_FINGERPRINT: u64;

    /// A JSON Schema (draft 2020-12) of the type's serialized form, for a schema registry.
    ///
    /// Covers the subset the derive can describe exactly: objects (`properties`, `required`,
    /// `additionalProperties` with `deny_unknown_fields`), field `rename`, container
    /// `rename_all`, `default`, `skip`, `skip_serializing_if`, `Option` (nullable, not
    /// required), sequences, maps, tuples, unit, and externally tagged enums. What it cannot
    /// describe exactly (`flatten`, internally, adjacently or untagged enums, hand-written
    /// impls) it describes as `{}`, which accepts anything: the schema never rejects a valid
    /// payload.
    fn json_schema() -> serde_json::Value {
        serde_json::json!({})
    }
}

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a (64 bits) of `text`: the fingerprint of a type described by `text` alone.
pub const fn shape_hash(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut hash = OFFSET;
    let mut index = 0;
    while index < bytes.len() {
        hash = (hash ^ bytes[index] as u64).wrapping_mul(PRIME);
        index += 1;
    }
    hash
}

/// Folds the fingerprint of a contained type into `hash` (order matters).
pub const fn shape_mix(hash: u64, child: u64) -> u64 {
    let mut hash = hash;
    let mut shift = 0;
    while shift < 64 {
        hash = (hash ^ ((child >> shift) & 0xff)).wrapping_mul(PRIME);
        shift += 8;
    }
    hash
}

/// `fingerprint` as 16 lowercase hex digits (ASCII).
pub const fn shape_hex(fingerprint: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    let mut index = 0;
    while index < 16 {
        let nibble = (fingerprint >> ((15 - index) * 4)) & 0xf;
        out[index] = DIGITS[nibble as usize];
        index += 1;
    }
    out
}

/// The hex digits of [`shape_hex`] as a `str` (for a `const &str`).
pub const fn hex_str(digits: &[u8; 16]) -> &str {
    match core::str::from_utf8(digits) {
        Ok(text) => text,
        Err(_) => "",
    }
}

macro_rules! leaf {
    ($($ty:ty => $text:literal $schema:tt),* $(,)?) => {
        $(impl Shape for $ty {
            const SHAPE_FINGERPRINT: u64 = shape_hash($text);
            fn json_schema() -> serde_json::Value {
                serde_json::json!($schema)
            }
        })*
    };
}

leaf! {
    bool => "bool" {"type": "boolean"},
    char => "char" {"type": "string", "minLength": 1, "maxLength": 1},
    str => "string" {"type": "string"},
    String => "string" {"type": "string"},
    () => "unit" {"type": "null"},
    u8 => "u8" {"type": "integer", "minimum": 0, "maximum": u8::MAX},
    u16 => "u16" {"type": "integer", "minimum": 0, "maximum": u16::MAX},
    u32 => "u32" {"type": "integer", "minimum": 0, "maximum": u32::MAX},
    u64 => "u64" {"type": "integer", "minimum": 0},
    u128 => "u128" {"type": "integer", "minimum": 0},
    usize => "usize" {"type": "integer", "minimum": 0},
    i8 => "i8" {"type": "integer", "minimum": i8::MIN, "maximum": i8::MAX},
    i16 => "i16" {"type": "integer", "minimum": i16::MIN, "maximum": i16::MAX},
    i32 => "i32" {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX},
    i64 => "i64" {"type": "integer"},
    i128 => "i128" {"type": "integer"},
    isize => "isize" {"type": "integer"},
    f32 => "f32" {"type": "number"},
    f64 => "f64" {"type": "number"},
    std::num::NonZeroU8 => "u8!0" {"type": "integer", "minimum": 1, "maximum": u8::MAX},
    std::num::NonZeroU16 => "u16!0" {"type": "integer", "minimum": 1, "maximum": u16::MAX},
    std::num::NonZeroU32 => "u32!0" {"type": "integer", "minimum": 1, "maximum": u32::MAX},
    std::num::NonZeroU64 => "u64!0" {"type": "integer", "minimum": 1},
    std::num::NonZeroI32 => "i32!0" {"type": "integer", "not": {"const": 0}},
    std::num::NonZeroI64 => "i64!0" {"type": "integer", "not": {"const": 0}},
    std::time::Duration => "duration" {"type": "object", "properties": {"secs": {"type": "integer", "minimum": 0}, "nanos": {"type": "integer", "minimum": 0}}, "required": ["secs", "nanos"]},
    std::time::SystemTime => "system_time" {"type": "object"},
    std::path::PathBuf => "path" {"type": "string"},
    std::net::IpAddr => "ip" {"type": "string"},
    std::net::SocketAddr => "socket" {"type": "string"},
    serde_json::Value => "json" {},
    uuid::Uuid => "uuid" {"type": "string", "format": "uuid"},
    chrono::NaiveDate => "naive_date" {"type": "string", "format": "date"},
    chrono::NaiveTime => "naive_time" {"type": "string"},
    chrono::NaiveDateTime => "naive_date_time" {"type": "string"},
    chrono::DateTime<chrono::Utc> => "date_time_utc" {"type": "string", "format": "date-time"},
    chrono::DateTime<chrono::FixedOffset> => "date_time_offset" {"type": "string", "format": "date-time"},
}

/// Serialized as its content (serde is transparent for these).
macro_rules! transparent {
    ($($ty:ident),*) => {
        $(impl<T: Shape + ?Sized> Shape for $ty<T> {
            const SHAPE_FINGERPRINT: u64 = T::SHAPE_FINGERPRINT;
            fn json_schema() -> serde_json::Value {
                T::json_schema()
            }
        })*
    };
}
transparent!(Box);
use std::rc::Rc;
use std::sync::Arc;
transparent!(Rc, Arc);

impl<T: Shape + ?Sized> Shape for &T {
    const SHAPE_FINGERPRINT: u64 = T::SHAPE_FINGERPRINT;
    fn json_schema() -> serde_json::Value {
        T::json_schema()
    }
}

impl<T: Shape + ?Sized + ToOwned> Shape for std::borrow::Cow<'_, T> {
    const SHAPE_FINGERPRINT: u64 = T::SHAPE_FINGERPRINT;
    fn json_schema() -> serde_json::Value {
        T::json_schema()
    }
}

impl<T: ?Sized> Shape for std::marker::PhantomData<T> {
    const SHAPE_FINGERPRINT: u64 = shape_hash("unit");
    fn json_schema() -> serde_json::Value {
        serde_json::json!({"type": "null"})
    }
}

/// A personal value's shape is its value's: sealing does not change what the field holds.
impl<T: Shape> Shape for crate::Personal<T> {
    const SHAPE_FINGERPRINT: u64 = shape_mix(shape_hash("personal"), T::SHAPE_FINGERPRINT);
    fn json_schema() -> serde_json::Value {
        serde_json::json!({
            "description": "a personal value: stored sealed, `es:personal:v1:<key version>:<subject>:<ciphertext>`",
            "type": "string"
        })
    }
}

impl<T: Shape> Shape for Option<T> {
    const SHAPE_FINGERPRINT: u64 = shape_mix(shape_hash("option"), T::SHAPE_FINGERPRINT);
    fn json_schema() -> serde_json::Value {
        serde_json::json!({"anyOf": [T::json_schema(), {"type": "null"}]})
    }
}

/// Serialized as a sequence.
macro_rules! seq {
    ($($ty:ty),*) => {
        $(impl<T: Shape> Shape for $ty {
            const SHAPE_FINGERPRINT: u64 = shape_mix(shape_hash("seq"), T::SHAPE_FINGERPRINT);
            fn json_schema() -> serde_json::Value {
                serde_json::json!({"type": "array", "items": T::json_schema()})
            }
        })*
    };
}
seq!(
    [T],
    Vec<T>,
    std::collections::VecDeque<T>,
    std::collections::LinkedList<T>,
    std::collections::BTreeSet<T>,
    std::collections::BinaryHeap<T>
);

impl<T: Shape, S> Shape for std::collections::HashSet<T, S> {
    const SHAPE_FINGERPRINT: u64 = shape_mix(shape_hash("seq"), T::SHAPE_FINGERPRINT);
    fn json_schema() -> serde_json::Value {
        serde_json::json!({"type": "array", "items": T::json_schema()})
    }
}

impl<T: Shape, const N: usize> Shape for [T; N] {
    const SHAPE_FINGERPRINT: u64 = shape_mix(
        shape_mix(shape_hash("array"), N as u64),
        T::SHAPE_FINGERPRINT,
    );
    fn json_schema() -> serde_json::Value {
        serde_json::json!({"type": "array", "items": T::json_schema(), "minItems": N, "maxItems": N})
    }
}

impl<K: Shape, V: Shape> Shape for std::collections::BTreeMap<K, V> {
    const SHAPE_FINGERPRINT: u64 = shape_mix(
        shape_mix(shape_hash("map"), K::SHAPE_FINGERPRINT),
        V::SHAPE_FINGERPRINT,
    );
    fn json_schema() -> serde_json::Value {
        // Keys are strings on the wire (numbers are quoted).
        serde_json::json!({"type": "object", "additionalProperties": V::json_schema()})
    }
}

impl<K: Shape, V: Shape, S> Shape for std::collections::HashMap<K, V, S> {
    const SHAPE_FINGERPRINT: u64 = shape_mix(
        shape_mix(shape_hash("map"), K::SHAPE_FINGERPRINT),
        V::SHAPE_FINGERPRINT,
    );
    fn json_schema() -> serde_json::Value {
        serde_json::json!({"type": "object", "additionalProperties": V::json_schema()})
    }
}

impl<T: Shape, E: Shape> Shape for Result<T, E> {
    const SHAPE_FINGERPRINT: u64 = shape_mix(
        shape_mix(shape_hash("result"), T::SHAPE_FINGERPRINT),
        E::SHAPE_FINGERPRINT,
    );
    fn json_schema() -> serde_json::Value {
        serde_json::json!({"oneOf": [
            {"type": "object", "properties": {"Ok": T::json_schema()}, "required": ["Ok"], "additionalProperties": false},
            {"type": "object", "properties": {"Err": E::json_schema()}, "required": ["Err"], "additionalProperties": false},
        ]})
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: Shape),+> Shape for ($($name,)+) {
            const SHAPE_FINGERPRINT: u64 = {
                let hash = shape_hash("tuple");
                $(let hash = shape_mix(hash, $name::SHAPE_FINGERPRINT);)+
                hash
            };
            fn json_schema() -> serde_json::Value {
                let items = [$($name::json_schema()),+];
                let len = items.len();
                serde_json::json!({"type": "array", "prefixItems": items, "items": false, "minItems": len})
            }
        }
    };
}
tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);

/// Builders of the schemas that derived [`Shape::json_schema`] impls return (plain calls, so
/// that the generated code stays small). Not a public API.
#[doc(hidden)]
pub mod schema {
    use serde_json::{Map, Value, json};

    /// A schema of a type's own, by its `json_schema` function.
    pub type Of = fn() -> Value;

    /// `{}`: anything.
    pub fn any() -> Value {
        json!({})
    }

    /// `null` (a unit struct).
    pub fn null() -> Value {
        json!({"type": "null"})
    }

    /// An object with `properties`, the `required` ones, closed to others if `closed`.
    pub fn object(properties: &[(&str, Of)], required: &[&str], closed: bool) -> Value {
        let properties: Map<String, Value> = properties
            .iter()
            .map(|(name, schema)| ((*name).to_owned(), schema()))
            .collect();
        json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": !closed,
        })
    }

    /// A fixed-length array (a tuple struct or variant).
    pub fn tuple(items: &[Of]) -> Value {
        let items: Vec<Value> = items.iter().map(|schema| schema()).collect();
        let len = items.len();
        json!({"type": "array", "prefixItems": items, "items": false, "minItems": len})
    }

    /// An externally tagged variant with content: `{"<name>": <content>}`.
    pub fn tagged(name: &str, content: Value) -> Value {
        let mut properties = Map::new();
        properties.insert(name.to_owned(), content);
        json!({
            "type": "object",
            "properties": properties,
            "required": [name],
            "additionalProperties": false,
        })
    }

    /// A unit variant: its name as a string.
    pub fn unit_variant(name: &str) -> Value {
        json!({"const": name})
    }

    /// An enum: exactly one of its variants.
    pub fn one_of(variants: Vec<Value>) -> Value {
        json!({"oneOf": variants})
    }
}

#[cfg(test)]
mod tests {
    use super::{Shape, hex_str, shape_hash, shape_hex};
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn the_hash_is_fnv1a() {
        // The reference value of FNV-1a 64 for "a".
        assert_eq!(shape_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            hex_str(&shape_hex(0x0123_4567_89ab_cdef)),
            "0123456789abcdef"
        );
    }

    #[test]
    fn containers_differ_by_their_content() {
        assert_ne!(
            <Option<u64>>::SHAPE_FINGERPRINT,
            <Option<String>>::SHAPE_FINGERPRINT
        );
        assert_ne!(
            <Vec<u64>>::SHAPE_FINGERPRINT,
            <Option<u64>>::SHAPE_FINGERPRINT
        );
        assert_ne!(<[u8; 4]>::SHAPE_FINGERPRINT, <[u8; 5]>::SHAPE_FINGERPRINT);
        assert_ne!(
            <(u8, u16)>::SHAPE_FINGERPRINT,
            <(u16, u8)>::SHAPE_FINGERPRINT
        );
        assert_eq!(
            <BTreeMap<String, u8>>::SHAPE_FINGERPRINT,
            <HashMap<String, u8>>::SHAPE_FINGERPRINT
        );
        assert_eq!(<Box<u8>>::SHAPE_FINGERPRINT, u8::SHAPE_FINGERPRINT);
    }
}
