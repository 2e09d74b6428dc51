//! Event enums: each variant of a `#[derive(EventEnum)]` enum is stored as its own event.
//!
//! A variant's payload is what the equivalent struct would serialize to (`ItemAdded { sku }`
//! as `{"sku": ..}`, a unit variant as `null`), without serde's enum tag: the stored name says
//! which variant it is. Encoding runs the enum's own `Serialize` through a serializer that
//! keeps only the variant's content; decoding hands the enum's `Deserialize` the variant by
//! index and the payload as its content, without copying the payload. Both therefore honour
//! every `serde` attribute of the fields, and need serde's default (externally tagged) enum
//! representation, which the derive checks.
//!
//! These are the functions the derived [`EventEnum`] impl calls.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer,
    VariantAccess, Visitor,
};
use serde::ser::{self, Impossible, Serialize, SerializeStruct as _, SerializeTuple as _};
use serde_json::Value;
use serde_json::value::Serializer as ValueSerializer;

use crate::event::{DecodeFailure, Event, EventEnum};
use crate::payload::StoredJson;
use crate::upcast::{Upcast, decode_previous, version_mismatch};

/// What an event enum needs from serde: both directions, derived. A bound of its own so that
/// a missing derive is reported as such, not as a list of serde's impls.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored: an event enum is serialized and deserialized with serde",
    label = "`{Self}` needs `Serialize` and `Deserialize`",
    note = "derive them beside `EventEnum`: `#[derive(EventEnum, Serialize, Deserialize, Clone)]`"
)]
pub trait StoredEnum: Serialize + DeserializeOwned {}

impl<E: Serialize + DeserializeOwned> StoredEnum for E {}

/// Encodes the variant `event` holds as its payload: the variant's content, without its tag.
pub fn encode_variant<E: StoredEnum>(event: &E) -> Result<Value, serde_json::Error> {
    event.serialize(ContentSerializer)
}

/// Decodes a payload stored at `version` as the variant at `index` (its position in the enum)
/// of an event whose current version is `latest` and which has no `previous`. The payload is
/// a `&Value` or JSON text (see [`StoredJson`]).
pub fn decode_variant<E: StoredEnum>(
    index: u32,
    latest: u32,
    version: u32,
    payload: impl StoredJson,
) -> Result<E, DecodeFailure> {
    if version != latest {
        return Err(version_mismatch(version, latest));
    }
    payload.parse_variant(index, version)
}

/// Deserializes `payload` as the content of the variant at `index` of `E`.
pub(crate) fn variant_from_value<E: StoredEnum>(
    index: u32,
    payload: &Value,
) -> Result<E, serde_json::Error> {
    E::deserialize(VariantDeserializer {
        index,
        content: Content(payload),
    })
}

/// Deserializes the JSON text `json` as the content of the variant at `index` of `E`, straight
/// from the text; anything after the JSON value but whitespace is an error, as in
/// `serde_json::from_str`.
pub(crate) fn variant_from_json<E: StoredEnum>(
    index: u32,
    json: &str,
) -> Result<E, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let event = E::deserialize(VariantDeserializer {
        index,
        content: Content(&mut deserializer),
    })?;
    deserializer.end()?;
    Ok(event)
}

/// Decodes a payload stored at `version` as the variant at `index`, named `name` and at version
/// `latest`, whose previous version is the event `P`: the current shape is deserialized
/// directly, an older one through `P`'s chain and the step `P` → `E` (`From<P> for E` or
/// `TryFrom`), which must produce this same variant.
pub fn decode_variant_upcast<P, E>(
    index: u32,
    name: &'static str,
    latest: u32,
    version: u32,
    payload: impl StoredJson,
) -> Result<E, DecodeFailure>
where
    P: Event,
    E: EventEnum + StoredEnum + Upcast<P>,
{
    if version >= latest {
        return decode_variant(index, latest, version, payload);
    }
    let upcast_failure = |message: String| DecodeFailure::Upcast {
        event: name,
        from: P::VERSION,
        to: latest,
        message,
    };
    let previous = decode_previous::<P>(version, latest, payload)?;
    let event = E::upcast(previous).map_err(|error| upcast_failure(error.to_string()))?;
    if event.name() != name {
        return Err(upcast_failure(format!(
            "the step made a `{}` event, not a `{name}` one",
            event.name()
        )));
    }
    Ok(event)
}

/// Why an enum did not serialize as one of its variants.
fn not_a_variant() -> serde_json::Error {
    ser::Error::custom(
        "an event enum must serialize as one of its variants: derive `Serialize` without `#[serde(untagged)]`, `tag`, `into` or `transparent`",
    )
}

/// Serializes an enum's variant as the equivalent struct: the content only, no tag.
struct ContentSerializer;

type Unsupported = Impossible<Value, serde_json::Error>;

/// Every serializer method an enum's derived `Serialize` does not call.
macro_rules! not_a_variant {
    ($($method:ident($($ty:ty),*);)*) => {
        $(fn $method(self $(, _: $ty)*) -> Result<Value, serde_json::Error> {
            Err(not_a_variant())
        })*
    };
}

impl ser::Serializer for ContentSerializer {
    type Ok = Value;
    type Error = serde_json::Error;
    type SerializeSeq = Unsupported;
    type SerializeTuple = Unsupported;
    type SerializeTupleStruct = Unsupported;
    type SerializeTupleVariant = TupleContent;
    type SerializeMap = Unsupported;
    type SerializeStruct = Unsupported;
    type SerializeStructVariant = StructContent;

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Value, serde_json::Error> {
        // As a unit struct serializes.
        Ok(Value::Null)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<Value, serde_json::Error> {
        value.serialize(ValueSerializer)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<TupleContent, serde_json::Error> {
        ser::Serializer::serialize_tuple(ValueSerializer, len).map(TupleContent)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<StructContent, serde_json::Error> {
        ser::Serializer::serialize_struct(ValueSerializer, variant, len).map(StructContent)
    }

    not_a_variant! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<Value, serde_json::Error> {
        Err(not_a_variant())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Value, serde_json::Error> {
        Err(not_a_variant())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Unsupported, serde_json::Error> {
        Err(not_a_variant())
    }

    fn serialize_tuple(self, _: usize) -> Result<Unsupported, serde_json::Error> {
        Err(not_a_variant())
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Unsupported, serde_json::Error> {
        Err(not_a_variant())
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Unsupported, serde_json::Error> {
        Err(not_a_variant())
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Unsupported, serde_json::Error> {
        Err(not_a_variant())
    }
}

/// A tuple variant's fields, as a tuple struct's: an array.
struct TupleContent(<ValueSerializer as ser::Serializer>::SerializeTuple);

impl ser::SerializeTupleVariant for TupleContent {
    type Ok = Value;
    type Error = serde_json::Error;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.0.serialize_element(value)
    }

    fn end(self) -> Result<Value, Self::Error> {
        self.0.end()
    }
}

/// A struct variant's fields, as a struct's: an object.
struct StructContent(<ValueSerializer as ser::Serializer>::SerializeStruct);

impl ser::SerializeStructVariant for StructContent {
    type Ok = Value;
    type Error = serde_json::Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.0.serialize_field(key, value)
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
        self.0.skip_field(key)
    }

    fn end(self) -> Result<Value, Self::Error> {
        self.0.end()
    }
}

/// Presents a stored payload as the variant at `index` of an enum, with the payload as the
/// variant's content (read as the equivalent struct would read it): `C` is a [`Content`].
struct VariantDeserializer<C> {
    index: u32,
    content: C,
}

impl<'de, C: VariantAccess<'de, Error = serde_json::Error>> Deserializer<'de>
    for VariantDeserializer<C>
{
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de, C: VariantAccess<'de, Error = serde_json::Error>> EnumAccess<'de>
    for VariantDeserializer<C>
{
    type Error = serde_json::Error;
    type Variant = C;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, C), Self::Error> {
        // A derived `Deserialize` accepts a variant's index as well as its name; the index does
        // not depend on `rename` or `rename_all`.
        let index: de::value::U32Deserializer<serde_json::Error> = self.index.into_deserializer();
        let variant = seed.deserialize(index)?;
        Ok((variant, self.content))
    }
}

/// A variant's content: a deserializer of the stored payload (a `&Value`, or the JSON text's
/// `&mut serde_json::Deserializer`), read as the equivalent struct would read it.
struct Content<D>(D);

impl<'de, D: Deserializer<'de, Error = serde_json::Error>> VariantAccess<'de> for Content<D> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        // As a unit struct reads: `null`.
        de::Deserialize::deserialize(self.0)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::{Deserialize, Serialize};
    use serde_json::{Value, json};

    use super::{decode_variant, encode_variant};
    use crate::event::DecodeFailure;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum Cart {
        Opened,
        Renamed(String),
        Moved(u8, String),
        #[serde(rename = "added")]
        ItemAdded {
            sku: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            note: Option<String>,
        },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Opened;
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Renamed(String);
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Moved(u8, String);
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct ItemAdded {
        sku: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    fn round_trip(index: u32, event: Cart, as_struct: Value) {
        let payload = encode_variant(&event).unwrap();
        assert_eq!(
            payload, as_struct,
            "{event:?} is stored as its struct would be"
        );
        let decoded: Cart = decode_variant(index, 1, 1, &payload).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn a_variant_is_stored_as_the_equivalent_struct() {
        round_trip(0, Cart::Opened, serde_json::to_value(Opened).unwrap());
        let renamed = Renamed("x".into());
        round_trip(
            1,
            Cart::Renamed("x".into()),
            serde_json::to_value(renamed).unwrap(),
        );
        let moved = Moved(3, "y".into());
        round_trip(
            2,
            Cart::Moved(3, "y".into()),
            serde_json::to_value(moved).unwrap(),
        );
        let added = ItemAdded {
            sku: "A1".into(),
            note: None,
        };
        let event = Cart::ItemAdded {
            sku: "A1".into(),
            note: None,
        };
        round_trip(3, event, serde_json::to_value(added).unwrap());
    }

    #[test]
    fn field_attributes_apply_when_decoding() {
        let decoded: Cart = decode_variant(3, 1, 1, &json!({ "sku": "A1" })).unwrap();
        assert_eq!(
            decoded,
            Cart::ItemAdded {
                sku: "A1".into(),
                note: None
            }
        );
    }

    #[test]
    fn a_payload_of_another_shape_is_a_payload_failure() {
        for (index, payload) in [
            (0, json!({})),
            (1, json!(7)),
            (2, json!([1])),
            (3, json!({ "sku": 1 })),
        ] {
            let failure = decode_variant::<Cart>(index, 1, 1, &payload).unwrap_err();
            assert!(
                matches!(failure, DecodeFailure::Payload { version: 1, .. }),
                "{index}: {failure}"
            );
        }
        let failure = decode_variant::<Cart>(9, 1, 1, &Value::Null).unwrap_err();
        assert!(failure.to_string().contains("variant index"), "{failure}");
    }

    #[test]
    fn versions_other_than_the_latest_are_refused() {
        let newer = decode_variant::<Cart>(0, 2, 3, &Value::Null).unwrap_err();
        assert!(matches!(
            newer,
            DecodeFailure::VersionTooNew {
                found: 3,
                latest: 2
            }
        ));
        let older = decode_variant::<Cart>(0, 2, 1, &Value::Null).unwrap_err();
        assert!(matches!(
            older,
            DecodeFailure::UnknownVersion {
                found: 1,
                latest: 2
            }
        ));
    }

    #[test]
    fn a_value_that_is_not_a_variant_does_not_encode() {
        #[derive(Serialize, Deserialize)]
        #[serde(untagged)]
        enum Untagged {
            A { a: u8 },
        }
        assert!(encode_variant(&Untagged::A { a: 1 }).is_err());
        assert!(encode_variant(&5_u8).is_err());
    }
}
