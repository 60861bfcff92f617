//! Queue names.

use std::fmt;

/// The longest queue name, in characters.
pub(crate) const MAX_QUEUE_NAME_LEN: usize = 128;

/// A validated queue name: 1 to 128 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

/// Why a string is not a queue name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidQueueName {
    /// The name is empty.
    #[error(
        "queue name is empty; it must be 1 to {MAX_QUEUE_NAME_LEN} characters of [A-Za-z0-9._-]"
    )]
    Empty,
    /// The name is longer than [`MAX_QUEUE_NAME_LEN`].
    #[error("queue name is {0} characters long; the limit is {MAX_QUEUE_NAME_LEN}")]
    TooLong(usize),
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    #[error("queue name holds {0:?}; only [A-Za-z0-9._-] are allowed")]
    BadCharacter(char),
}

impl QueueName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidQueueName> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidQueueName::Empty);
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidQueueName::BadCharacter(c));
        }
        // Only ASCII is left, so bytes are characters.
        if name.len() > MAX_QUEUE_NAME_LEN {
            return Err(InvalidQueueName::TooLong(name.len()));
        }
        Ok(Self(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert!(QueueName::new("emails.welcome_v2-eu").is_ok());
        assert!(QueueName::new("x".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_odd_names() {
        assert_eq!(QueueName::new(""), Err(InvalidQueueName::Empty));
        assert_eq!(
            QueueName::new("x".repeat(129)),
            Err(InvalidQueueName::TooLong(129))
        );
        assert_eq!(
            QueueName::new("a b"),
            Err(InvalidQueueName::BadCharacter(' '))
        );
        assert_eq!(
            QueueName::new("é"),
            Err(InvalidQueueName::BadCharacter('é'))
        );
    }
}
