//! The two forms in which a store hands over a stored payload: a parsed [`Value`], or the JSON
//! text itself (PostgreSQL's `jsonb` as it arrives), and decoding either into a typed event.
//!
//! Decoding from text deserializes the event straight from the bytes, without building a
//! `Value` tree first and then copying every string out of it: for a load of 2,000 events
//! that was most of the client's time (BENCHMARKS.md, "Cold load from raw bytes"). The upcaster
//! chain and the event enums are written once, generic over [`StoredJson`].

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::event::{DecodeFailure, Event};
use crate::variant::{StoredEnum, variant_from_json, variant_from_value};

mod sealed {
    pub trait Sealed {}
    impl Sealed for &serde_json::Value {}
    impl Sealed for &str {}
}

/// A stored payload in one of the forms a store hands over: `&Value` (parsed) or `&str` (JSON
/// text). What the decoding functions of [`crate::upcast`] and the event enums take, so that
/// one chain serves both; implemented for those two types only.
pub trait StoredJson: sealed::Sealed + Copy {
    /// Deserializes the payload as `T`, the shape of schema `version`.
    fn parse<T: DeserializeOwned>(self, version: u32) -> Result<T, DecodeFailure>;

    /// Decodes the payload, stored at `version`, as the event `E` through its chain:
    /// [`Event::decode_version`] of a value, [`Event::decode_version_json`] of text.
    fn decode_event<E: Event>(self, version: u32) -> Result<E, DecodeFailure>;

    /// Deserializes the payload as the content of the variant at `index` of the event enum
    /// `E`: the payload as the equivalent struct would read it, without an enum tag.
    fn parse_variant<E: StoredEnum>(self, index: u32, version: u32) -> Result<E, DecodeFailure>;
}

impl StoredJson for &Value {
    fn parse<T: DeserializeOwned>(self, version: u32) -> Result<T, DecodeFailure> {
        T::deserialize(self).map_err(|source| DecodeFailure::Payload { version, source })
    }

    fn decode_event<E: Event>(self, version: u32) -> Result<E, DecodeFailure> {
        E::decode_version(version, self)
    }

    fn parse_variant<E: StoredEnum>(self, index: u32, version: u32) -> Result<E, DecodeFailure> {
        variant_from_value(index, self).map_err(|source| DecodeFailure::Payload { version, source })
    }
}

impl StoredJson for &str {
    fn parse<T: DeserializeOwned>(self, version: u32) -> Result<T, DecodeFailure> {
        serde_json::from_str(self).map_err(|source| DecodeFailure::Payload { version, source })
    }

    fn decode_event<E: Event>(self, version: u32) -> Result<E, DecodeFailure> {
        E::decode_version_json(version, self)
    }

    fn parse_variant<E: StoredEnum>(self, index: u32, version: u32) -> Result<E, DecodeFailure> {
        variant_from_json(index, self).map_err(|source| DecodeFailure::Payload { version, source })
    }
}
