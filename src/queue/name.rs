//! Names of queues and schedules: 1 to 128 characters of `[A-Za-z0-9._-]`.

use std::fmt;

/// The longest queue or schedule name, in characters.
pub(crate) const MAX_QUEUE_NAME_LEN: usize = 128;

/// A validated queue name: 1 to 128 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

/// A validated schedule name, by the same rules as a queue name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScheduleName(String);

/// Why a string is not a queue or schedule name. The messages name no
/// subject: the caller says which field was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidName {
    /// The name is empty.
    #[error("is empty; a name is 1 to {MAX_QUEUE_NAME_LEN} characters of [A-Za-z0-9._-]")]
    Empty,
    /// The name is longer than [`MAX_QUEUE_NAME_LEN`].
    #[error("is {0} characters long; the limit is {MAX_QUEUE_NAME_LEN}")]
    TooLong(usize),
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    #[error("holds {0:?}; only [A-Za-z0-9._-] are allowed")]
    BadCharacter(char),
}

/// Checks a queue or schedule name.
fn check(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::Empty);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(InvalidName::BadCharacter(c));
    }
    // Only ASCII is left, so bytes are characters.
    if name.len() > MAX_QUEUE_NAME_LEN {
        return Err(InvalidName::TooLong(name.len()));
    }
    Ok(())
}

impl QueueName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        check(&name)?;
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

impl ScheduleName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        check(&name)?;
        Ok(Self(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScheduleName {
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
        assert_eq!(QueueName::new(""), Err(InvalidName::Empty));
        assert_eq!(
            QueueName::new("x".repeat(129)),
            Err(InvalidName::TooLong(129))
        );
        assert_eq!(QueueName::new("a b"), Err(InvalidName::BadCharacter(' ')));
        assert_eq!(QueueName::new("é"), Err(InvalidName::BadCharacter('é')));
        assert_eq!(
            ScheduleName::new("a/b"),
            Err(InvalidName::BadCharacter('/'))
        );
    }
}
