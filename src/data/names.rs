//! Enums with fixed lowercase names (tasks, splits): one parser and one error for all of them.

use thiserror::Error;

/// An enum whose variants are known by fixed names, as in recipes and on the command line.
pub trait NamedVariant: Copy + 'static {
    /// What the names name, for error messages ("task", "split").
    const WHAT: &'static str;
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// A name that is none of the known ones; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} \"{given}\"; expected one of {known}")]
pub struct UnknownName {
    pub what: &'static str,
    pub given: String,
    pub known: String,
}

pub fn parse_name<T: NamedVariant>(given: &str) -> Result<T, UnknownName> {
    T::ALL
        .iter()
        .copied()
        .find(|variant| variant.name() == given)
        .ok_or_else(|| UnknownName {
            what: T::WHAT,
            given: given.to_owned(),
            known: T::ALL
                .iter()
                .map(|variant| variant.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Implements [`NamedVariant`], `FromStr` and `Display` for an enum with inherent `ALL` and
/// `name()`, under the given kind name (a macro because orphan rules forbid blanket impls).
macro_rules! impl_named_variant {
    ($type:ty, $what:literal) => {
        impl $crate::data::names::NamedVariant for $type {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &<$type>::ALL;

            fn name(self) -> &'static str {
                <$type>::name(self)
            }
        }

        impl std::str::FromStr for $type {
            type Err = $crate::data::names::UnknownName;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                $crate::data::names::parse_name(name)
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
pub(crate) use impl_named_variant;

#[cfg(test)]
mod tests {
    use std::fmt::{Debug, Display};
    use std::str::FromStr;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::data::{Split, TaskKind};

    /// The name is what `FromStr`, `Display` and serde all use.
    fn assert_names_round_trip<T>()
    where
        T: NamedVariant + FromStr<Err = UnknownName> + Display + Serialize + DeserializeOwned,
        T: PartialEq + Debug,
    {
        for &variant in T::ALL {
            assert_eq!(variant.name().parse::<T>(), Ok(variant));
            assert_eq!(variant.to_string(), variant.name());
            let json = serde_json::to_string(&variant).unwrap();
            assert_eq!(json, format!("\"{}\"", variant.name()));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), variant);
        }
    }

    #[test]
    fn task_and_split_names_round_trip() {
        assert_names_round_trip::<TaskKind>();
        assert_names_round_trip::<Split>();
    }
}
