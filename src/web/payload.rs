//! A payload as people can read it: pretty JSON when it parses, text when
//! it is UTF-8, a hex dump otherwise; cut short past a limit (the whole
//! payload is a download away).

use std::fmt::Write as _;

/// Text shown at most, in bytes.
const TEXT_SHOWN: usize = 64 * 1024;
/// Binary shown at most, in bytes.
const HEX_SHOWN: usize = 4 * 1024;

/// How a payload is shown.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Shown {
    /// `JSON`, `text` or `binary`.
    pub kind: &'static str,
    /// What to show (escaped when rendered).
    pub text: String,
    /// Whether only the start is shown.
    pub truncated: bool,
}

/// How `payload` is shown.
pub(super) fn show(payload: &[u8]) -> Shown {
    if let Ok(text) = std::str::from_utf8(payload) {
        if payload.len() <= TEXT_SHOWN
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
            && (value.is_object() || value.is_array())
            && let Ok(pretty) = serde_json::to_string_pretty(&value)
        {
            return Shown {
                kind: "JSON",
                text: pretty,
                truncated: false,
            };
        }
        let mut end = text.len().min(TEXT_SHOWN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        return Shown {
            kind: "text",
            text: text[..end].to_string(),
            truncated: end < text.len(),
        };
    }
    let shown = &payload[..payload.len().min(HEX_SHOWN)];
    Shown {
        kind: "binary",
        text: hex_dump(shown),
        truncated: shown.len() < payload.len(),
    }
}

/// Sixteen bytes a line: offset, hex, and the printable ones.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + bytes.len() / 16 * 12);
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", line * 16);
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if i == 7 {
                out.push(' ');
            }
        }
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_text_is_text_and_binary_is_hex() {
        let json = show(br#"{"to":"a@b.c","n":[1,2]}"#);
        assert_eq!(json.kind, "JSON");
        assert!(json.text.contains("\n  \"to\": \"a@b.c\""), "{}", json.text);
        let text = show(b"hello <b>");
        assert_eq!(
            (text.kind, text.text.as_str(), text.truncated),
            ("text", "hello <b>", false)
        );
        // A bare JSON string or number is shown as the text it is.
        assert_eq!(show(b"42").kind, "text");
        let binary = show(&[0x00, 0xff, b'A']);
        assert_eq!(binary.kind, "binary");
        assert!(
            binary.text.starts_with("00000000  00 ff 41 "),
            "{}",
            binary.text
        );
        assert!(binary.text.ends_with("..A\n"), "{}", binary.text);
    }

    #[test]
    fn long_payloads_are_cut_at_a_character_boundary() {
        let long = "é".repeat(TEXT_SHOWN);
        let shown = show(long.as_bytes());
        assert!(shown.truncated);
        assert!(shown.text.len() <= TEXT_SHOWN);
        let binary = show(&vec![0xffu8; HEX_SHOWN + 1]);
        assert!(binary.truncated);
        assert_eq!(binary.text.lines().count(), HEX_SHOWN / 16);
    }
}
