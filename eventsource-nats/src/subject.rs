//! Subjects: where an event is published (`<prefix>.<category>.<event name>`), with the
//! characters a NATS subject token cannot hold escaped.

use crate::error::InvalidPrefix;

/// A validated subject prefix, e.g. `events` or `shop.events`: one or more tokens without
/// whitespace or wildcards.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubjectPrefix(String);

impl SubjectPrefix {
    /// Checks `prefix`: non-empty tokens separated by `.`, no whitespace, no `*` or `>`.
    pub fn new(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        let bad = prefix.is_empty()
            || prefix.split('.').any(|token| {
                token.is_empty()
                    || token
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
            });
        if bad {
            return Err(InvalidPrefix {
                prefix: eventsource_core::limits::bounded(&prefix).into_owned(),
            });
        }
        Ok(SubjectPrefix(prefix))
    }

    /// The prefix as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject an event of `category` named `name` is published to:
    /// `<prefix>.<escaped category>.<escaped name>`.
    ///
    /// ```
    /// # use eventsource_nats::SubjectPrefix;
    /// let prefix = SubjectPrefix::new("events").unwrap();
    /// assert_eq!(prefix.subject("cart", "cart.item_added"), "events.cart.cart%2Eitem_added");
    /// ```
    pub fn subject(&self, category: &str, name: &str) -> String {
        format!(
            "{}.{}.{}",
            self.0,
            escape_token(category),
            escape_token(name)
        )
    }

    /// The filter matching every event this prefix carries: `<prefix>.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.0)
    }

    /// The filter matching every event of one category: `<prefix>.<escaped category>.*`.
    pub fn category(&self, category: &str) -> String {
        format!("{}.{}.*", self.0, escape_token(category))
    }
}

impl std::fmt::Display for SubjectPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Escapes `raw` into one subject token: ASCII letters, digits, `_` and `-` stay; every other
/// byte (of its UTF-8 form), `%` included, becomes `%HH`. The empty string becomes `%`, which
/// no other input produces. The mapping is one-to-one, so two names never share a subject.
pub fn escape_token(raw: &str) -> String {
    if raw.is_empty() {
        return "%".to_owned();
    }
    let mut token = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            token.push(char::from(byte));
        } else {
            token.push('%');
            token.push(char::from(HEX[usize::from(byte >> 4)]));
            token.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    token
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_safe_characters_and_escape_the_rest() {
        assert_eq!(escape_token("cart"), "cart");
        assert_eq!(escape_token("cart.item_added"), "cart%2Eitem_added");
        assert_eq!(escape_token("a b*>%"), "a%20b%2A%3E%25");
        assert_eq!(escape_token("é"), "%C3%A9");
        assert_eq!(escape_token(""), "%");
        assert_eq!(escape_token("%"), "%25");
        assert_eq!(escape_token("\r\n"), "%0D%0A");
    }

    #[test]
    fn escaped_tokens_are_valid_subject_tokens() {
        for raw in ["", ".", "..", "*", ">", " ", "\t", "a.b", "x\u{0}y", "日本"] {
            let token = escape_token(raw);
            assert!(!token.is_empty());
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)),
                "{raw:?} -> {token:?}"
            );
        }
    }

    #[test]
    fn prefixes_are_checked() {
        for good in ["events", "shop.events", "a-b_c"] {
            assert!(SubjectPrefix::new(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a b", "a.*", "a.>", "a\n"] {
            assert!(SubjectPrefix::new(bad).is_err(), "{bad:?}");
        }
        let prefix = SubjectPrefix::new("events").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(prefix.all(), "events.>");
        assert_eq!(prefix.category("cart"), "events.cart.*");
        assert_eq!(prefix.subject("", "x"), "events.%.x");
    }
}
