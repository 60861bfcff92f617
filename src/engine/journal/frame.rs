//! How one record sits on disk: a frame with its length, sequence number
//! and two CRC32C checksums, one over the header and one over the payload.
//!
//! ```text
//! len: u32 LE | seq: u64 LE | header crc: u32 LE | payload crc: u32 LE | payload: len bytes
//! ```
//!
//! The header has its own checksum so that a bit flip in a length is
//! caught as corruption instead of being read as a frame that runs past the
//! end of the file (which would look like a torn tail and cut good records).

/// Bytes before the payload.
pub(crate) const HEADER: usize = 20;
/// Largest payload a frame may carry: more is corruption, not a record.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;

/// Appends the frame for `payload` with sequence number `seq` to `out`.
pub(crate) fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    // Payloads are records the server made, far below 4 GiB (a job is at
    // most the request limit); a longer one is a bug upstream.
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let len = payload.len() as u32;
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32c::crc32c(&head).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What the bytes at an offset hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole, intact frame of `size` bytes.
    Frame {
        /// Its sequence number.
        seq: u64,
        /// Its payload.
        payload: &'a [u8],
        /// Bytes the frame takes, header included.
        size: usize,
    },
    /// Fewer bytes than the frame needs: the end of what was written.
    Short,
    /// Bytes that are no frame: what is wrong with them.
    Corrupt(&'static str),
}

/// Reads the frame at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER {
        return Decoded::Short;
    }
    let field = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    if crc32c::crc32c(&buf[..12]) != field(12) {
        return Decoded::Corrupt("header checksum mismatch");
    }
    let len = field(0) as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Corrupt("length past the largest record");
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&buf[4..12]);
    let Some(payload) = buf.get(HEADER..HEADER + len) else {
        return Decoded::Short;
    };
    if crc32c::crc32c(payload) != field(16) {
        return Decoded::Corrupt("payload checksum mismatch");
    }
    Decoded::Frame {
        seq: u64::from_le_bytes(seq),
        payload,
        size: HEADER + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_as_written() {
        let mut out = Vec::new();
        encode(7, b"hello", &mut out);
        encode(8, b"", &mut out);
        let Decoded::Frame { seq, payload, size } = decode(&out) else {
            panic!("a frame");
        };
        assert_eq!((seq, payload, size), (7, &b"hello"[..], HEADER + 5));
        assert_eq!(
            decode(&out[size..]),
            Decoded::Frame {
                seq: 8,
                payload: b"",
                size: HEADER
            }
        );
    }

    #[test]
    fn every_cut_is_short_and_every_flipped_bit_is_caught() {
        let mut out = Vec::new();
        encode(42, b"some payload bytes", &mut out);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Decoded::Short, "cut at {cut}");
        }
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    matches!(decode(&bad), Decoded::Corrupt(_)),
                    "bit {bit} of byte {byte}"
                );
            }
        }
    }
}
