//! Small serde helpers shared by the wire types.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

/// The largest integer plus one that every number in a transcript stays below (`2^53`).
pub const MAX_SAFE_EXCLUSIVE: u64 = 1 << 53;

/// Deserialises a string, borrowing it from the input when there are no escapes.
pub(crate) fn deserialize_str<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Cow<'de, str>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    deserializer.deserialize_str(Visitor)
}

/// An integer in `[0, 2^53)`: the only numbers the spec allows.
pub(crate) fn deserialize_safe_u64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<u64, D::Error> {
    let value = u64::deserialize(deserializer)?;
    if value >= MAX_SAFE_EXCLUSIVE {
        return Err(serde::de::Error::custom("integer must be below 2^53"));
    }
    Ok(value)
}

/// A field that must be present and may be `null` (serde would otherwise accept a missing
/// field as `None`, and the canonical re-serialisation would then differ from the input).
pub(crate) fn deserialize_required_option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// Implements `Display`, `Serialize` (as a string) and `Deserialize` (through `parse`)
/// for a newtype that has `fn parse(&str) -> Result<Self, E>` and `fn as_str(&self)`.
macro_rules! string_newtype_serde {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = $crate::serde_util::deserialize_str(deserializer)?;
                <$ty>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_newtype_serde;
