//! Query strings and form bodies as `key=value` pairs, and links built
//! from them.

use crate::queue::{JobId, QueueName, ScheduleName};

use super::WebError;

/// The pairs of a query string or an `application/x-www-form-urlencoded`
/// body, in order (a key may repeat, as a list of checked boxes does).
#[derive(Debug, Default)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a query string or form body.
    pub(super) fn parse(input: &[u8]) -> Self {
        Self(form_urlencoded::parse(input).into_owned().collect())
    }

    /// Parses an optional query string.
    pub(super) fn query(query: Option<&str>) -> Self {
        Self::parse(query.unwrap_or("").as_bytes())
    }

    /// The first value of `key`, if given and not empty.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub(super) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The queue named by `key`, which must be there.
    pub(super) fn queue(&self, key: &str) -> Result<QueueName, WebError> {
        let name = self.get(key).ok_or_else(|| {
            WebError::BadRequest(format!(
                "`{key}` is missing: name a queue, as in ?{key}=emails"
            ))
        })?;
        QueueName::new(name).map_err(|e| WebError::BadRequest(format!("`{key}` {e}")))
    }

    /// The schedule named by `key`, which must be there.
    pub(super) fn schedule(&self, key: &str) -> Result<ScheduleName, WebError> {
        let name = self.get(key).ok_or_else(|| {
            WebError::BadRequest(format!(
                "`{key}` is missing: name a schedule, as in ?{key}=hourly-report"
            ))
        })?;
        ScheduleName::new(name).map_err(|e| WebError::BadRequest(format!("`{key}` {e}")))
    }

    /// The job id given as `key`, if any.
    pub(super) fn job_id(&self, key: &str) -> Result<Option<JobId>, WebError> {
        self.get(key).map(|id| job_id(key, id)).transpose()
    }
}

/// A job id, or a 400 saying what one looks like.
pub(super) fn job_id(key: &str, text: &str) -> Result<JobId, WebError> {
    text.parse().map_err(|_| {
        WebError::BadRequest(format!(
            "`{key}` is {text:?}, not a job id: a job id is 26 characters of Crockford base32 (a ULID), as in 01JDQ0Z6Y7R3M2A9V5B8C4D1EF"
        ))
    })
}

/// A link to `path` with these query pairs, encoded.
pub(super) fn href(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    format!("{path}?{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_repeat_and_links_are_encoded() {
        let p = Params::parse(b"id=a&id=b&csrf=x&q=a%26b+c&empty=");
        assert_eq!(p.all("id").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p.get("q"), Some("a&b c"));
        assert_eq!(p.get("empty"), None);
        assert_eq!(
            href("/queue", &[("name", "a&b"), ("q", "<x>")]),
            "/queue?name=a%26b&q=%3Cx%3E"
        );
        assert!(p.queue("missing").is_err());
        assert!(Params::parse(b"name=bad%20name").queue("name").is_err());
        assert!(job_id("id", "nope").is_err());
    }
}
