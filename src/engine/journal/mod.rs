//! The journal: one append-only log of every change to every queue, in
//! segment files under a data dir, so that a restart (or a `kill -9`)
//! loses no change that was answered.
//!
//! - [`record`]: what a change looks like (protobuf, so a newer jobq reads
//!   an older journal);
//! - `frame`: how a record sits on disk, length-prefixed and checked with
//!   CRC32C twice (header and payload);
//! - [`Journal`]: the writing end, with group commit on a writer thread and
//!   a syncer thread of its own;
//! - [`replay`]: reading a data dir back at start-up, cutting a torn tail
//!   and refusing corruption anywhere else;
//! - [`DataDir`]: the lock that keeps two servers off one data dir.
//!
//! The log is written by hand because no maintained crate offers a queue
//! journal with group commit and segment compaction: embedded key-value
//! stores (fjall, redb, sled) keep tombstones for insert-then-delete work
//! and grow files that do not shrink back. The pieces come from crates:
//! CRC32C from `crc32c`, encoding from `prost`, locking from `std`.

mod frame;
pub mod record;
mod replay;
pub mod schedule;
mod writer;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use replay::{Recovered, RecoveryMode, replay};
pub use writer::{Fsync, Journal, JournalOptions, Progress, SegmentFile, SyncObserver};

/// The first bytes of every segment file: the format and its version.
const SEGMENT_MAGIC: &[u8; 8] = b"JOBQJNL\x01";

/// A segment's file name: its first record's sequence number, padded so
/// that names sort in sequence order.
fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.jnl"))
}

/// The first sequence number a segment file holds, from its name.
fn segment_first(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".jnl")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

/// What went wrong with the journal.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file operation failed.
    #[error("{doing} {}: {error}", path.display())]
    Io {
        /// What jobq was doing.
        doing: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        error: Arc<std::io::Error>,
    },
    /// The data dir is held by another running jobq.
    #[error(
        "the data dir {} is in use by another jobq process (it holds {}); stop it, or give this one another --data-dir",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The data dir.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A record other than a torn tail does not read back.
    #[error(
        "the journal is corrupt at {} offset {offset}: {why}; start with --journal-recovery=truncate to drop it and everything after it",
        path.display()
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where in it the bad record begins.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// The writer stopped after a failed write or sync.
    #[error("the journal writer failed: {0}")]
    WriterFailed(Arc<str>),
    /// The writer is gone (the journal was closed).
    #[error("the journal is closed")]
    Stopped,
}

impl JournalError {
    fn io(doing: &'static str, path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            doing,
            path: path.to_path_buf(),
            error: Arc::new(error),
        }
    }
}

/// A data dir, held exclusively by this process while the value lives.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    // Held for the lock it carries; the lock goes with the file.
    _lock: File,
}

impl DataDir {
    /// Creates `path` if needed and locks it, refusing a dir another
    /// process holds.
    pub fn lock(path: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(path)
            .map_err(|e| JournalError::io("creating the data dir", path, e))?;
        let lock_path = path.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| JournalError::io("opening the lock file", &lock_path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                path: path.to_path_buf(),
                _lock: file,
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Locked {
                dir: path.to_path_buf(),
                lock: lock_path,
            }),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(JournalError::io("locking the data dir", &lock_path, e))
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests;
