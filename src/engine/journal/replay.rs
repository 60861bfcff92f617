//! Reading a data dir back: every segment in sequence order, every record
//! checked. Zeros after a segment's last record are space the writer
//! allocated ahead, and are cut off quietly. A torn tail (the last segment
//! ending inside a record, which no caller was ever told was durable) is
//! cut off and logged. Anything else that does not read back stops
//! start-up, unless the operator accepts the loss.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use prost::Message;

use super::frame::{self, Decoded};
use super::record::Record;
use super::{JournalError, SEGMENT_MAGIC, segment_first};

/// What to do with a record that does not read back, other than a torn
/// tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Stop, naming the file and offset.
    Strict,
    /// Drop it and everything after it, and say what was dropped.
    Truncate,
}

/// What a replay read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The sequence number the next record gets.
    pub next_seq: u64,
    /// Records read and applied.
    pub records: u64,
    /// Segment files read.
    pub segments: usize,
    /// Bytes of a torn tail cut from the last segment.
    pub torn_bytes: u64,
    /// What [`RecoveryMode::Truncate`] dropped, one line per place.
    pub dropped: Vec<String>,
}

/// Reads every record in `dir` in order and hands each to `apply`, with
/// its sequence number. Cuts a torn tail off the last segment (the file is
/// shortened, so what is written next follows whole records).
pub fn replay(
    dir: &Path,
    mode: RecoveryMode,
    mut apply: impl FnMut(u64, Record),
) -> Result<Recovered, JournalError> {
    let segments = segments(dir)?;
    let mut recovered = Recovered {
        next_seq: 1,
        segments: segments.len(),
        ..Recovered::default()
    };
    let mut expected: Option<u64> = None;
    for (index, (path, first)) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        let bytes = std::fs::read(path).map_err(|e| JournalError::io("reading", path, e))?;
        let end = read_segment(
            *first,
            &bytes,
            last,
            &mut expected,
            &mut recovered,
            &mut apply,
        );
        match end {
            SegmentEnd::Whole => {}
            SegmentEnd::Unused { at } => truncate(path, at)?,
            SegmentEnd::Torn { at } => {
                recovered.torn_bytes = bytes.len() as u64 - at;
                truncate(path, at)?;
                tracing::warn!(
                    file = %path.display(),
                    bytes = recovered.torn_bytes,
                    "cut a torn record off the end of the journal (a write that was never acknowledged)"
                );
            }
            SegmentEnd::Corrupt { at, why } => {
                let error = JournalError::Corrupt {
                    path: path.clone(),
                    offset: at,
                    why,
                };
                if mode == RecoveryMode::Strict {
                    return Err(error);
                }
                recovered.dropped.push(format!(
                    "{} from offset {at}: {} bytes ({error})",
                    path.display(),
                    bytes.len() as u64 - at
                ));
                truncate(path, at.max(SEGMENT_MAGIC.len() as u64))?;
                for (later, _) in &segments[index + 1..] {
                    let size = std::fs::metadata(later).map_or(0, |m| m.len());
                    recovered
                        .dropped
                        .push(format!("{}: all {size} bytes", later.display()));
                    std::fs::remove_file(later)
                        .map_err(|e| JournalError::io("removing", later, e))?;
                }
                for line in &recovered.dropped {
                    tracing::warn!(dropped = %line, "journal recovery dropped records");
                }
                break;
            }
        }
    }
    if let Some(next) = expected {
        recovered.next_seq = next;
    }
    Ok(recovered)
}

/// How a segment's bytes ended.
enum SegmentEnd {
    /// At a record boundary.
    Whole,
    /// At a record boundary followed by zeros up to the end of the file:
    /// space the writer allocated ahead and never filled.
    Unused { at: u64 },
    /// Inside the last record of the last segment, at this offset.
    Torn { at: u64 },
    /// At a record that does not read back.
    Corrupt { at: u64, why: String },
}

fn read_segment(
    first: u64,
    bytes: &[u8],
    last: bool,
    expected: &mut Option<u64>,
    recovered: &mut Recovered,
    apply: &mut impl FnMut(u64, Record),
) -> SegmentEnd {
    let Some(body) = bytes.strip_prefix(SEGMENT_MAGIC.as_slice()) else {
        if last && SEGMENT_MAGIC.starts_with(bytes) {
            // Created, and its header not yet whole.
            return SegmentEnd::Torn { at: 0 };
        }
        return SegmentEnd::Corrupt {
            at: 0,
            why: "not a jobq journal segment (bad header)".into(),
        };
    };
    if expected.is_some_and(|next| next != first) {
        return SegmentEnd::Corrupt {
            at: 0,
            why: format!(
                "the segment starts at record {first}, but record {} was expected",
                expected.unwrap_or_default()
            ),
        };
    }
    let mut at = 0usize;
    while at < body.len() {
        let offset = (SEGMENT_MAGIC.len() + at) as u64;
        match frame::decode(&body[at..]) {
            Decoded::Frame { seq, payload, size } => {
                let want = expected.unwrap_or(first);
                if seq != want {
                    return SegmentEnd::Corrupt {
                        at: offset,
                        why: format!("record {seq} where record {want} was expected"),
                    };
                }
                let Ok(record) = Record::decode(payload) else {
                    return SegmentEnd::Corrupt {
                        at: offset,
                        why: "a record whose checksum holds does not decode".into(),
                    };
                };
                apply(seq, record);
                recovered.records += 1;
                *expected = Some(seq + 1);
                at += size;
            }
            _ if unused(&body[at..]) => return SegmentEnd::Unused { at: offset },
            Decoded::Short if last => return SegmentEnd::Torn { at: offset },
            Decoded::Short => {
                return SegmentEnd::Corrupt {
                    at: offset,
                    why: "an older segment ends inside a record".into(),
                };
            }
            Decoded::Corrupt(why) => {
                let rest = &body[at..];
                if last && torn(rest) {
                    return SegmentEnd::Torn { at: offset };
                }
                return SegmentEnd::Corrupt {
                    at: offset,
                    why: why.into(),
                };
            }
        }
    }
    if expected.is_none() {
        // An empty segment still says where numbering goes on.
        *expected = Some(first);
    }
    SegmentEnd::Whole
}

/// Whether the bytes after the last record are space allocated ahead and
/// never written: nothing but zeros.
fn unused(rest: &[u8]) -> bool {
    rest.iter().all(|b| *b == 0)
}

/// Whether bad bytes at the end of the last segment are a write cut short
/// rather than damage: up to where only zeros (space allocated ahead)
/// follow, a header cut short, or a record whose header holds and whose
/// payload runs that far or past it.
fn torn(rest: &[u8]) -> bool {
    let written = rest
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1);
    let rest = &rest[..written];
    if rest.len() < frame::HEADER {
        return true;
    }
    let header_holds =
        crc32c::crc32c(&rest[..12]) == u32::from_le_bytes([rest[12], rest[13], rest[14], rest[15]]);
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    header_holds && frame::HEADER + len >= rest.len()
}

fn truncate(path: &Path, at: u64) -> Result<(), JournalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| JournalError::io("opening to cut", path, e))?;
    file.set_len(at)
        .and_then(|()| file.sync_all())
        .map_err(|e| JournalError::io("cutting", path, e))
}

/// The segment files of `dir`, in sequence order.
pub(super) fn segments(dir: &Path) -> Result<Vec<(PathBuf, u64)>, JournalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| JournalError::io("listing", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| JournalError::io("listing", dir, e))?
            .path();
        if let Some(first) = segment_first(&path) {
            found.push((path, first));
        }
    }
    found.sort_by_key(|(_, first)| *first);
    Ok(found)
}
