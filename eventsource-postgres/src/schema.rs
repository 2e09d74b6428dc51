//! The validated name of the schema a store lives in.

use std::fmt;

use crate::error::PostgresError;

/// The longest schema name accepted: the NOTIFY channel `<schema>_events` must stay within
/// PostgreSQL's 63-byte identifier limit.
pub const MAX_SCHEMA_NAME_LEN: usize = 50;

/// A PostgreSQL schema name the store may put into SQL: 1 to 50 characters of `a-z`, `0-9` and
/// `_`, not starting with a digit, not starting with `pg_` (reserved by PostgreSQL) and not
/// `information_schema`.
///
/// The store quotes the name into its statements (identifiers cannot be bound as parameters),
/// which is safe only because nothing else gets past [`SchemaName::new`].
///
/// ```
/// # use eventsource_postgres::SchemaName;
/// assert!(SchemaName::new("billing_events").is_ok());
/// assert!(SchemaName::new("Billing").is_err());
/// assert!(SchemaName::new("x\"; DROP TABLE y; --").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    /// The schema a store uses unless told otherwise.
    pub const DEFAULT: &'static str = "eventsource";

    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, PostgresError> {
        let name = name.into();
        let reject = |reason| {
            Err(PostgresError::InvalidSchemaName {
                name: name.clone(),
                reason,
            })
        };
        if name.is_empty() {
            return reject("it is empty");
        }
        if name.len() > MAX_SCHEMA_NAME_LEN {
            return reject("it is longer than 50 characters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return reject("use only lowercase ASCII letters, digits and `_`");
        }
        if name.as_bytes()[0].is_ascii_digit() {
            return reject("it starts with a digit");
        }
        if name.starts_with("pg_") || name == "information_schema" {
            return reject("PostgreSQL reserves `pg_*` and `information_schema`");
        }
        Ok(SchemaName(name))
    }

    /// The default schema, `eventsource`.
    pub(crate) fn default_schema() -> Self {
        SchemaName(SchemaName::DEFAULT.to_owned())
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier.
    pub(crate) fn quoted(&self) -> String {
        // Validated: no quote can occur inside.
        format!("\"{}\"", self.0)
    }

    /// The NOTIFY channel appends signal on.
    pub(crate) fn channel(&self) -> String {
        format!("{}_events", self.0)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SchemaName {
    type Err = PostgresError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SchemaName::new(name)
    }
}

#[cfg(test)]
mod tests {
    use super::SchemaName;

    #[test]
    fn the_default_is_valid() {
        assert_eq!(
            SchemaName::new(SchemaName::DEFAULT).ok(),
            Some(SchemaName::default_schema())
        );
    }

    #[test]
    fn accepts_plain_identifiers() {
        for name in [
            "eventsource",
            "_private",
            "t_0123abcd",
            "a",
            "x".repeat(50).as_str(),
        ] {
            assert!(SchemaName::new(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let too_long = "x".repeat(51);
        for name in [
            "",
            "Upper",
            "1abc",
            "with space",
            "semi;colon",
            "quo\"te",
            "dash-ed",
            "pg_catalog",
            "information_schema",
            "ünï",
            too_long.as_str(),
        ] {
            assert!(
                SchemaName::new(name).is_err(),
                "{name:?} should be rejected"
            );
        }
    }
}
