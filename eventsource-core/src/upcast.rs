//! The upcaster chain: how a payload stored at an old schema version becomes the current type.
//!
//! Each version of an event names its predecessor (`#[event(version = 3, previous = V2)]`) and
//! converts from it with `From` (a step that cannot fail) or `TryFrom` (one that can). Decoding
//! a payload stored at version 1 into version 3 deserializes the version-1 type, then converts
//! 1 → 2 → 3. These are the functions the derived [`Event::decode_version`] calls; they are
//! public so that a hand-written `Event` impl can use them too.

use std::fmt::Display;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::event::{DecodeFailure, Event};
pub use crate::payload::StoredJson;

/// One typed step of an upcaster chain: converting the previous version `P` of an event into
/// this one.
///
/// Implemented for every `T: TryFrom<P>` whose error is `Display`, which includes every
/// `T: From<P>` (its error is [`std::convert::Infallible`]). Write `From` or `TryFrom`; never
/// implement this trait yourself.
#[diagnostic::on_unimplemented(
    message = "no upcaster step from `{P}` to `{Self}`",
    label = "`{Self}` names `{P}` as `previous` but cannot be made from it",
    note = "add `impl From<{P}> for {Self}`, or `impl TryFrom<{P}> for {Self}` (with an error that implements `Display`) when the step can fail"
)]
pub trait Upcast<P>: Sized {
    /// Why the step failed (`Infallible` for a `From` step).
    type Error: Display;

    /// Converts the previous version into this one.
    fn upcast(previous: P) -> Result<Self, Self::Error>;
}

impl<P, T> Upcast<P> for T
where
    T: TryFrom<P>,
    T::Error: Display,
{
    type Error = T::Error;

    fn upcast(previous: P) -> Result<Self, Self::Error> {
        T::try_from(previous)
    }
}

/// A stored payload's type: `Deserialize` (every `DeserializeOwned` type is one). The bound of
/// the decoding functions, so that an event without `Deserialize` is reported as such.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` does not implement `Deserialize`",
    label = "stored payloads of `{Self}` are decoded with `Deserialize`",
    note = "derive it: `#[derive(Event, Serialize, Deserialize)]` on `{Self}`"
)]
pub trait Payload: DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: DeserializeOwned> Payload for T {}

/// Decodes a payload of the first version of an event (one without a `previous`), given as a
/// `&Value` or as JSON text (see [`StoredJson`]).
pub fn decode_first<T: Event + Payload>(
    version: u32,
    payload: impl StoredJson,
) -> Result<T, DecodeFailure> {
    if version == T::VERSION {
        payload.parse(version)
    } else {
        Err(version_mismatch(version, T::VERSION))
    }
}

/// Decodes a payload stored at `version` into `T`, whose previous version is `P`: the current
/// shape is deserialized directly, an older one through `P`'s chain and the step `P` → `T`.
/// The payload is a `&Value` or JSON text (see [`StoredJson`]); text is deserialized straight
/// into the stored version's type, whichever it is.
pub fn decode_upcast<P, T>(version: u32, payload: impl StoredJson) -> Result<T, DecodeFailure>
where
    P: Event,
    T: Event + Payload + Upcast<P>,
{
    if version == T::VERSION {
        return payload.parse(version);
    }
    let previous = decode_previous::<P>(version, T::VERSION, payload)?;
    T::upcast(previous).map_err(|error| DecodeFailure::Upcast {
        event: T::NAME,
        from: P::VERSION,
        to: T::VERSION,
        message: error.to_string(),
    })
}

/// Why a payload stored at `version` is not the single version `latest` a step of the chain
/// decodes directly.
pub(crate) fn version_mismatch(version: u32, latest: u32) -> DecodeFailure {
    if version > latest {
        DecodeFailure::VersionTooNew {
            found: version,
            latest,
        }
    } else {
        DecodeFailure::UnknownVersion {
            found: version,
            latest,
        }
    }
}

/// Decodes a payload stored at `version` as `P`, the previous version of an event whose newest
/// version is `latest` (a newer `version` is refused here).
pub(crate) fn decode_previous<P: Event>(
    version: u32,
    latest: u32,
    payload: impl StoredJson,
) -> Result<P, DecodeFailure> {
    if version > latest {
        return Err(version_mismatch(version, latest));
    }
    payload
        .decode_event::<P>(version)
        .map_err(|failure| match failure {
            // Report the newest version of the chain, not the oldest one that gave up.
            DecodeFailure::UnknownVersion { found, .. } => {
                DecodeFailure::UnknownVersion { found, latest }
            }
            other => other,
        })
}

/// Whether two strings are equal, in a `const` context (the derive's compile-time checks
/// compare event names with it).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The index of the first of `names` that equals an earlier one, or `names.len()` if they all
/// differ. One `const` evaluation for a whole list (the derive checks an aggregate's events
/// with it), instead of one assertion per pair.
pub const fn first_repeated(names: &[&str]) -> usize {
    let mut later = 1;
    while later < names.len() {
        let mut earlier = 0;
        while earlier < later {
            if str_eq(names[earlier], names[later]) {
                return later;
            }
            earlier += 1;
        }
        later += 1;
    }
    names.len()
}

/// Says that `S`, a newer version of an event, upcasts from `Self`: `#[derive(Event)]` with
/// `previous = P` implements `SupersededBy<Self> for P`. Generic over the newer version so that
/// the impl is allowed where the newer version is declared even when `P` comes from another
/// crate (the orphan rule accepts `impl SupersededBy<Local> for Foreign`).
///
/// An aggregate asks whether a listed event has such an impl ([`NewestProbe`]); one that does
/// is a retired version, a compile error. Never implement it yourself.
pub trait SupersededBy<S> {}

/// What [`NewestProbe::successor`] answers for an event that nothing upcasts from.
#[derive(Clone, Copy, Debug)]
pub struct Newest;

/// Asks, by method resolution, whether `T` has a newer version: `(&NewestProbe::<T>::NEW)
/// .successor()` is [`RetiredBy::successor`] (giving the newer version's type) when some `S`
/// has `T: SupersededBy<S>`, and [`NotRetired::successor`] (giving [`Newest`]) otherwise. The
/// first needs no auto-reference, so it wins whenever it applies; the existential "some `S`"
/// is what method resolution can answer and a trait bound cannot.
pub struct NewestProbe<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> NewestProbe<T> {
    /// The probe.
    pub const NEW: Self = NewestProbe(PhantomData);
}

/// The answer of [`NewestProbe`] for a retired version; see there.
pub trait RetiredBy<S> {
    /// The newer version's type.
    fn successor(&self) -> PhantomData<S>;
}

impl<T: ?Sized + SupersededBy<S>, S> RetiredBy<S> for NewestProbe<T> {
    fn successor(&self) -> PhantomData<S> {
        PhantomData
    }
}

/// The answer of [`NewestProbe`] for the newest version; see there.
pub trait NotRetired {
    /// [`Newest`].
    fn successor(&self) -> PhantomData<Newest>;
}

impl<T: ?Sized> NotRetired for &NewestProbe<T> {
    fn successor(&self) -> PhantomData<Newest> {
        PhantomData
    }
}

/// That `E`, listed in `events(...)` of aggregate `A`, is the newest version of its chain:
/// implemented only for [`Newest`], so a `Self` that is a newer version of `E` fails with this
/// message, at the event in the list.
#[diagnostic::on_unimplemented(
    message = "`{E}` is a retired version: `{Self}` upcasts from it, so `{A}` cannot list `{E}` in `events(...)`",
    label = "a retired version of its event",
    note = "list the newest version of the chain instead (`{Self}`, or the version that upcasts from it): stored `{E}` payloads are decoded into it through the upcaster chain"
)]
pub trait ListedAsNewest<E: ?Sized, A: ?Sized> {}

#[diagnostic::do_not_recommend]
impl<E: ?Sized, A: ?Sized> ListedAsNewest<E, A> for Newest {}

/// The check `#[derive(Aggregate)]` makes of each listed event `E`: `successor` is what
/// [`NewestProbe`] answered for it (only its type matters; the generated function that calls
/// this is never called).
pub fn assert_newest<S, E, A>(successor: PhantomData<S>)
where
    S: ListedAsNewest<E, A>,
    E: ?Sized,
    A: ?Sized,
{
    let _ = successor;
}

#[cfg(test)]
mod tests {
    use super::{first_repeated, str_eq};

    #[test]
    fn first_repeated_finds_the_later_of_a_pair() {
        assert_eq!(first_repeated(&["a", "b", "c"]), 3);
        assert_eq!(first_repeated(&["a", "b", "a", "b"]), 2);
        assert_eq!(first_repeated(&[]), 0);
    }

    #[test]
    fn str_eq_compares_bytes() {
        const { assert!(str_eq("cart.opened", "cart.opened")) };
        assert!(!str_eq("cart.opened", "cart.opene"));
        assert!(!str_eq("cart.opened", "cart.closed"));
        assert!(str_eq("", ""));
    }
}
