//! [`Metadata`]: a stored job's string headers, packed.

/// A stored job's metadata entries, in the order given (sorted by key, as
/// the services hand them in).
///
/// Packed into one text and one list of offsets, behind one pointer: a
/// job without metadata holds one word, and one with four entries three
/// allocations, where a boxed slice of `(String, String)` held two words
/// and nine allocations (each a malloc chunk of at least 32 bytes), which
/// a million queued jobs pay for a million times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(Option<Box<Packed>>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Packed {
    /// Every key and value, one after the other.
    text: Box<str>,
    /// Where each key and then its value ends in `text`. Metadata is
    /// bounded by the request size limit, far below 4 GiB.
    ends: Box<[u32]>,
}

impl Metadata {
    /// The entries, in their order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let (text, ends) = match &self.0 {
            Some(packed) => (&*packed.text, &*packed.ends),
            None => ("", &[][..]),
        };
        let start = |i: usize| match i {
            0 => 0,
            i => ends[i - 1] as usize,
        };
        // An offset out of range (it cannot be: see `From`) reads as an
        // empty string rather than a panic.
        let piece = move |i: usize| text.get(start(i)..ends[i] as usize).unwrap_or("");
        (0..ends.len() / 2).map(move |e| (piece(2 * e), piece(2 * e + 1)))
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |packed| packed.ends.len() / 2)
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The value of `key`'s first entry.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The entries as owned pairs.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl From<Vec<(String, String)>> for Metadata {
    fn from(entries: Vec<(String, String)>) -> Self {
        if entries.is_empty() {
            return Self(None);
        }
        let bytes = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut text = String::with_capacity(bytes);
        let mut ends = Vec::with_capacity(2 * entries.len());
        for (key, value) in &entries {
            for piece in [key, value] {
                text.push_str(piece);
                ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            }
        }
        Self(Some(Box::new(Packed {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn gives_back_the_entries_it_was_made_from() {
        for entries in [
            pairs(&[]),
            pairs(&[("k", "v")]),
            pairs(&[("a", ""), ("b", "two"), ("traceparent", "00-ab-cd-01")]),
            pairs(&[("ключ", "значение"), ("", "empty key"), ("z", "é\0x")]),
        ] {
            let metadata = Metadata::from(entries.clone());
            assert_eq!(metadata.to_vec(), entries);
            assert_eq!(metadata.len(), entries.len());
            assert_eq!(metadata.is_empty(), entries.is_empty());
            for (k, v) in &entries {
                assert_eq!(metadata.get(k), Some(v.as_str()));
            }
            assert_eq!(metadata.get("absent"), None);
        }
    }

    #[test]
    fn is_one_word_in_a_job() {
        assert_eq!(
            std::mem::size_of::<Metadata>(),
            std::mem::size_of::<usize>()
        );
    }
}
