//! [`Journal`]: appends records in the order callers hand them over; a
//! writer thread writes them to segment files, many callers' records per
//! write, and a syncer thread syncs behind it, one `fdatasync` covering
//! every write before it (group commit).
//!
//! A caller appends inside the critical section that makes the change (so
//! the journal's order is the order of changes: [`Journal::append`] never
//! blocks on I/O, only on a short lock), releases its locks, then awaits
//! [`Journal::durable`] for the sequence number it got. No Tokio worker
//! ever writes or syncs a file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{oneshot, watch};

use super::frame;
use super::record::Record;
use super::{JournalError, SEGMENT_MAGIC, segment_path};

/// When the journal syncs what it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Before any change it holds is answered: one `fdatasync` per write,
    /// covering every caller whose records the write took.
    Always,
    /// Answered once written; synced every interval, whether or not more
    /// writes came (a crash of the process loses nothing, a power loss at
    /// most the interval).
    Interval(Duration),
    /// Never synced by jobq (the kernel writes back when it likes): for
    /// tests and throwaway use.
    Never,
}

/// How the journal is written.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// When it syncs.
    pub fsync: Fsync,
    /// A segment past this size is closed and the next one begun.
    pub segment_bytes: u64,
    /// Told how long each sync took, if anyone listens (the metrics).
    pub sync_observer: Option<Arc<dyn SyncObserver>>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            fsync: Fsync::Always,
            segment_bytes: 64 << 20,
            sync_observer: None,
        }
    }
}

/// Told of every `fdatasync` the journal makes.
pub trait SyncObserver: Send + Sync + std::fmt::Debug {
    /// A sync took `took`.
    fn synced(&self, took: Duration);
}

/// How far the writer has come.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every record up to this sequence number has been written to its
    /// file (it survives the process, not yet a power loss).
    pub written: u64,
    /// Every record up to this sequence number is as durable as the fsync
    /// policy makes it (written, and synced under [`Fsync::Always`]).
    pub durable: u64,
    /// Writes made, each one or more records.
    pub writes: u64,
    /// `fdatasync` calls made.
    pub syncs: u64,
    /// Segments begun since the journal was opened (the first included).
    pub segments_begun: u64,
    /// Records written.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Segment files on disk, as compaction last counted.
    pub segments_on_disk: u64,
    /// Bytes of those segments.
    pub bytes_on_disk: u64,
    /// Bytes compaction copied forward (jobs and idempotency keys that
    /// still live, out of segments about to be deleted).
    pub copied_bytes: u64,
    /// Why the writer stopped, if a write or sync failed: nothing after it
    /// is durable, and nothing will be.
    pub failed: Option<Arc<str>>,
}

/// One segment file on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// The sequence number of its first record.
    pub first: u64,
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Callers waiting for a sequence number, by the sequence number, so that
/// a write wakes exactly the callers it covers (not every waiter).
#[derive(Debug, Default)]
struct Waiters {
    written: u64,
    durable: u64,
    /// Keyed by sequence number, then by order of arrival.
    for_written: BTreeMap<(u64, u64), oneshot::Sender<()>>,
    for_durable: BTreeMap<(u64, u64), oneshot::Sender<()>>,
    /// Numbers waiters in order of arrival.
    arrivals: u64,
    /// Why the writer stopped, once it has: nothing more will be released.
    stopped: Option<JournalError>,
}

impl Waiters {
    /// Moves the waiters of `map` up to `seq` into `ready`.
    fn due(
        map: &mut BTreeMap<(u64, u64), oneshot::Sender<()>>,
        seq: u64,
        ready: &mut Vec<oneshot::Sender<()>>,
    ) {
        while let Some(entry) = map.first_entry() {
            if entry.key().0 > seq {
                break;
            }
            ready.push(entry.remove());
        }
    }
}

/// The journal's writing end. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Journal {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    // A std mutex: held to assign a sequence number and copy a frame into
    // the buffer, never across an `.await` or any I/O.
    pending: Mutex<Pending>,
    more: Condvar,
    /// Counters, read by metrics; kept apart from `events` so that a write
    /// wakes no task that waits for an event.
    counters: Counters,
    /// Rare events tasks wait for: a segment begun, the writer failed.
    events: watch::Sender<Events>,
    // A std mutex: held to file or release waiters, never across an
    // `.await` or any I/O.
    waiters: Mutex<Waiters>,
    /// How far the writer has written, for the syncer.
    to_sync: Mutex<ToSync>,
    sync_more: Condvar,
    writer: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    segment_bytes: u64,
    /// Bytes free for the data dir, as the writer last read them (read by
    /// enqueues without a system call).
    free_bytes: AtomicU64,
    /// Held by a test to keep the writer from writing.
    #[cfg(test)]
    paused: Mutex<()>,
    /// For a test that loses what was not synced: each segment's length
    /// as of its last sync, noted before the sync's callers are released.
    #[cfg(test)]
    synced_lengths: Mutex<std::collections::HashMap<PathBuf, u64>>,
}

#[derive(Debug)]
struct Pending {
    next_seq: u64,
    /// Frames not yet taken by the writer, in sequence order.
    buf: Vec<u8>,
    /// The sequence number of the first frame in `buf`.
    first: u64,
    closed: bool,
    /// Whether the writer is waiting for frames: only then does an append
    /// wake it (a wake-up is a system call, and a busy writer takes every
    /// frame appended meanwhile anyway).
    writer_idle: bool,
}

/// The writer's and syncer's figures, as they go.
#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    durable: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    copied_bytes: AtomicU64,
    segments_on_disk: AtomicU64,
    bytes_on_disk: AtomicU64,
}

/// What tasks wait for.
#[derive(Clone, Debug, Default)]
struct Events {
    segments_begun: u64,
    /// Steps of growth: one per segment begun, and one per 256th of a
    /// segment written, so compaction looks again as the journal grows.
    grown: u64,
    failed: Option<Arc<str>>,
}

/// Space is allocated ahead a segment's 64th at a time (between 4 KiB and
/// 1 MiB): the file's size, and so its metadata, changes once per chunk
/// instead of at every sync.
const ALLOCATION_STEPS: u64 = 64;

/// How many growth steps a segment has (see [`Events::grown`]).
const GROWTH_STEPS: u64 = 256;

/// Bytes written between two reads of the data dir's free space: far less
/// than the two segments of room an enqueue keeps spare, so a disk filling
/// up is seen in time.
const FREE_SPACE_EVERY: u64 = 1 << 20;

impl Journal {
    /// Starts a journal in `dir` whose next record gets `next_seq` (one past
    /// the last record recovery read), in a new segment.
    pub fn open(dir: &Path, next_seq: u64, options: JournalOptions) -> Result<Self, JournalError> {
        let segment = Segment::create(dir, next_seq, options.segment_bytes)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                next_seq,
                buf: Vec::new(),
                first: next_seq,
                closed: false,
                writer_idle: false,
            }),
            more: Condvar::new(),
            counters: Counters {
                written: AtomicU64::new(next_seq.saturating_sub(1)),
                durable: AtomicU64::new(next_seq.saturating_sub(1)),
                ..Counters::default()
            },
            events: watch::Sender::new(Events {
                segments_begun: 1,
                grown: 1,
                failed: None,
            }),
            waiters: Mutex::new(Waiters {
                written: next_seq.saturating_sub(1),
                durable: next_seq.saturating_sub(1),
                ..Waiters::default()
            }),
            to_sync: Mutex::new(ToSync {
                written: next_seq.saturating_sub(1),
                bytes: 0,
                file: None,
                #[cfg(test)]
                path: PathBuf::new(),
                closed: false,
                syncer_idle: false,
            }),
            sync_more: Condvar::new(),
            writer: Mutex::new(None),
            dir: dir.to_path_buf(),
            segment_bytes: options.segment_bytes,
            free_bytes: AtomicU64::new(free_space(dir)),
            #[cfg(test)]
            paused: Mutex::new(()),
            #[cfg(test)]
            synced_lengths: Mutex::default(),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            dir: dir.to_path_buf(),
            segment,
            options,
            last: next_seq.saturating_sub(1),
            since_free_space: 0,
        };
        let handle = std::thread::Builder::new()
            .name("jobq-journal".into())
            .spawn(move || writer.run())
            .map_err(|e| JournalError::io("starting the journal writer", dir, e))?;
        *lock(&shared.writer) = Some(handle);
        Ok(Self { shared })
    }

    /// Hands `record` to the writer and returns its sequence number. Never
    /// waits for I/O: await [`durable`](Self::durable) for that, after
    /// releasing any lock.
    pub fn append(&self, record: &Record) -> u64 {
        self.append_framed(record).0
    }

    /// As [`append`](Self::append), for a record that compaction copies
    /// forward: its bytes are counted in [`Progress::copied_bytes`].
    pub fn append_copy(&self, record: &Record) -> u64 {
        let (seq, bytes) = self.append_framed(record);
        self.shared
            .counters
            .copied_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        seq
    }

    /// Appends a record; returns its sequence number and framed size.
    fn append_framed(&self, record: &Record) -> (u64, u64) {
        let payload = record.encode_to_vec();
        let mut pending = lock(&self.shared.pending);
        let seq = pending.next_seq;
        pending.next_seq += 1;
        if pending.buf.is_empty() {
            pending.first = seq;
        }
        let before = pending.buf.len();
        frame::encode(seq, &payload, &mut pending.buf);
        let bytes = (pending.buf.len() - before) as u64;
        let wake = std::mem::take(&mut pending.writer_idle);
        drop(pending);
        if wake {
            self.shared.more.notify_one();
        }
        (seq, bytes)
    }

    /// Completes once record `seq` is durable, or fails if the writer
    /// stopped first.
    pub async fn durable(&self, seq: u64) -> Result<(), JournalError> {
        self.wait(seq, true).await
    }

    /// Completes once record `seq` is written to its file (whatever the
    /// fsync policy), or fails if the writer stopped first.
    pub async fn written(&self, seq: u64) -> Result<(), JournalError> {
        self.wait(seq, false).await
    }

    /// Completes when the writer has failed, with why.
    pub async fn failed(&self) -> Arc<str> {
        let mut events = self.shared.events.subscribe();
        let failed = events
            .wait_for(|p| p.failed.is_some())
            .await
            .ok()
            .and_then(|p| p.failed.clone());
        match failed {
            Some(why) => why,
            // The journal is gone, so it cannot fail any more.
            None => std::future::pending().await,
        }
    }

    /// Completes when the journal has grown by a step after the `seen`th:
    /// a segment begun, or another 256th of a segment written. Returns
    /// the steps so far.
    pub async fn grown(&self, seen: u64) -> Result<u64, JournalError> {
        let mut events = self.shared.events.subscribe();
        let grown = events
            .wait_for(|p| p.failed.is_some() || p.grown > seen)
            .await
            .map_err(|_| JournalError::Stopped)?
            .grown;
        Ok(grown)
    }

    /// Records what compaction found on disk.
    pub fn note_disk(&self, segments: usize, bytes: u64) {
        let counters = &self.shared.counters;
        counters
            .segments_on_disk
            .store(segments as u64, Ordering::Relaxed);
        counters.bytes_on_disk.store(bytes, Ordering::Relaxed);
    }

    /// Bytes free on the data dir's file system for this process, as
    /// last read (at the start, and after each mebibyte written).
    pub fn free_bytes(&self) -> u64 {
        self.shared.free_bytes.load(Ordering::Relaxed)
    }

    /// Pretends the data dir has `bytes` free, until the writer next reads
    /// the free space.
    #[cfg(test)]
    pub(crate) fn pretend_free_for_test(&self, bytes: u64) {
        self.shared.free_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The size at which a segment is closed.
    pub fn segment_bytes(&self) -> u64 {
        self.shared.segment_bytes
    }

    /// The segment files on disk, oldest first: each one's first sequence
    /// number, path and size. The last is the one being written. Reads the
    /// directory: call it where blocking is allowed.
    pub fn segments(&self) -> Result<Vec<SegmentFile>, JournalError> {
        let mut segments = Vec::new();
        for (path, first) in super::replay::segments(&self.shared.dir)? {
            let bytes = std::fs::metadata(&path)
                .map_err(|e| JournalError::io("reading a segment's size", &path, e))?
                .len();
            segments.push(SegmentFile { first, path, bytes });
        }
        Ok(segments)
    }

    /// Deletes an old segment whose every live job has been copied forward,
    /// and syncs the directory. Refuses the segment being written. Blocking.
    pub fn remove_segment(&self, segment: &SegmentFile) -> Result<(), JournalError> {
        let newest = self.segments()?.last().map(|s| s.first);
        if newest.is_none_or(|newest| segment.first >= newest) {
            return Err(JournalError::io(
                "removing the segment being written",
                &segment.path,
                std::io::Error::other("only older segments can be removed"),
            ));
        }
        std::fs::remove_file(&segment.path)
            .map_err(|e| JournalError::io("removing a compacted segment", &segment.path, e))?;
        sync_dir(&self.shared.dir)
    }

    /// The sequence number of the last record appended (0 before any).
    pub fn last_appended(&self) -> u64 {
        lock(&self.shared.pending).next_seq.saturating_sub(1)
    }

    async fn wait(&self, seq: u64, durable: bool) -> Result<(), JournalError> {
        let released = {
            let mut waiters = lock(&self.shared.waiters);
            if let Some(stopped) = &waiters.stopped {
                return Err(stopped.clone());
            }
            let reached = if durable {
                waiters.durable
            } else {
                waiters.written
            };
            if reached >= seq {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            waiters.arrivals += 1;
            let key = (seq, waiters.arrivals);
            let map = if durable {
                &mut waiters.for_durable
            } else {
                &mut waiters.for_written
            };
            map.insert(key, tx);
            rx
        };
        match released.await {
            Ok(()) => Ok(()),
            // Dropped unreleased: the writer stopped.
            Err(_) => Err(lock(&self.shared.waiters)
                .stopped
                .clone()
                .unwrap_or(JournalError::Stopped)),
        }
    }

    /// Marks the writer failed, as a failed write would.
    #[cfg(test)]
    pub(crate) fn fail_for_test(&self, why: &Arc<str>) {
        stop_waiters(&self.shared, JournalError::WriterFailed(Arc::clone(why)));
        self.shared
            .events
            .send_modify(|e| e.failed = Some(Arc::clone(why)));
    }

    /// Each segment's length as of its last sync (what a power loss keeps).
    #[cfg(test)]
    pub(crate) fn synced_lengths_for_test(&self) -> std::collections::HashMap<PathBuf, u64> {
        lock(&self.shared.synced_lengths).clone()
    }

    /// Keeps the writer from writing while the guard lives.
    #[cfg(test)]
    pub(crate) fn pause_for_test(&self) -> MutexGuard<'_, ()> {
        lock(&self.shared.paused)
    }

    /// How far the writer has come.
    pub fn progress(&self) -> Progress {
        let events = self.shared.events.borrow().clone();
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Acquire);
        Progress {
            written: get(&c.written),
            durable: get(&c.durable),
            writes: get(&c.writes),
            syncs: get(&c.syncs),
            segments_begun: events.segments_begun,
            records: get(&c.records),
            bytes: get(&c.bytes),
            segments_on_disk: get(&c.segments_on_disk),
            bytes_on_disk: get(&c.bytes_on_disk),
            copied_bytes: get(&c.copied_bytes),
            failed: events.failed,
        }
    }

    /// Writes and syncs what is pending, then stops the writer thread and
    /// waits for it: blocking, so call it where blocking is allowed (for
    /// example in `spawn_blocking`).
    pub fn close(&self) {
        let mut pending = lock(&self.shared.pending);
        pending.closed = true;
        pending.writer_idle = false;
        drop(pending);
        self.shared.more.notify_one();
        if let Some(handle) = lock(&self.shared.writer).take() {
            let _ = handle.join();
        }
    }
}

/// Bytes free on `dir`'s file system for this process (as `df` shows
/// them); 0 when that cannot be read, so enqueues are refused rather than
/// a disk filled blind.
fn free_space(dir: &Path) -> u64 {
    rustix::fs::statvfs(dir).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// Marks the writer stopped and lets every waiter go, with `why`.
fn stop_waiters(shared: &Shared, why: JournalError) {
    let mut waiters = lock(&shared.waiters);
    waiters.stopped.get_or_insert(why);
    // Dropping the senders tells each waiter.
    waiters.for_written.clear();
    waiters.for_durable.clear();
}

/// Records how far the writer has come and releases the waiters covered.
fn release(shared: &Shared, written: u64, durable: Option<u64>) {
    let mut ready = Vec::new();
    {
        let mut waiters = lock(&shared.waiters);
        waiters.written = waiters.written.max(written);
        Waiters::due(&mut waiters.for_written, written, &mut ready);
        if let Some(durable) = durable {
            waiters.durable = waiters.durable.max(durable);
            Waiters::due(&mut waiters.for_durable, durable, &mut ready);
        }
    }
    for waiter in ready {
        let _ = waiter.send(());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing is left half-done under these locks: a panic elsewhere while
    // one was held leaves data that is still whole.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The segment being written.
#[derive(Debug)]
struct Segment {
    // Shared with the syncer thread, which syncs it while the writer
    // writes (`&File` does both).
    file: Arc<File>,
    path: PathBuf,
    /// Bytes written.
    bytes: u64,
    /// The file's length: space allocated ahead of `bytes`, so that most
    /// syncs find the file's size unchanged and write no metadata.
    allocated: u64,
    /// How much to allocate ahead at a time.
    chunk: u64,
}

impl Segment {
    /// The segment whose first record is `first`: new, or the empty one a
    /// start that wrote nothing left (replay has cut any torn header), with
    /// its header synced and the directory entry too.
    fn create(dir: &Path, first: u64, segment_bytes: u64) -> Result<Self, JournalError> {
        let path = segment_path(dir, first);
        // Not in append mode: records are written at their offsets, into
        // space allocated ahead (and `O_APPEND` would ignore the offset).
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| JournalError::io("creating a segment", &path, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| JournalError::io("reading a segment's size", &path, e))?
            .len();
        match bytes {
            0 => file
                .write_all_at(SEGMENT_MAGIC, 0)
                .and_then(|()| file.sync_data())
                .map_err(|e| JournalError::io("writing a segment header", &path, e))?,
            n if n == SEGMENT_MAGIC.len() as u64 => {}
            n => {
                return Err(JournalError::Corrupt {
                    path,
                    offset: 0,
                    why: format!(
                        "the segment for record {first} already holds {n} bytes, but recovery found no record there"
                    ),
                });
            }
        }
        sync_dir(dir)?;
        let header = SEGMENT_MAGIC.len() as u64;
        Ok(Self {
            file: Arc::new(file),
            path,
            bytes: header,
            allocated: header,
            chunk: (segment_bytes / ALLOCATION_STEPS).clamp(4 << 10, 1 << 20),
        })
    }

    /// Writes `batch` after what is written, allocating more space ahead
    /// first when it would not fit.
    fn write(&mut self, batch: &[u8]) -> Result<(), JournalError> {
        let end = self.bytes + batch.len() as u64;
        if end > self.allocated {
            let to = end.div_ceil(self.chunk) * self.chunk;
            // Allocated and zeroed, so that writes into it change no size;
            // a file system without it just grows the file as it writes.
            if rustix::fs::fallocate(
                &*self.file,
                rustix::fs::FallocateFlags::empty(),
                self.allocated,
                to - self.allocated,
            )
            .is_ok()
            {
                self.allocated = to;
            }
        }
        self.file
            .write_all_at(batch, self.bytes)
            .map_err(|e| JournalError::io("writing", &self.path, e))?;
        self.bytes = end;
        self.allocated = self.allocated.max(end);
        Ok(())
    }

    /// Gives back the space allocated past what was written, once the
    /// segment is full and synced. (If this is lost in a crash, replay
    /// reads the zeros as unused space, and cuts them then.)
    fn trim(&mut self) -> Result<(), JournalError> {
        if self.allocated > self.bytes {
            self.file
                .set_len(self.bytes)
                .map_err(|e| JournalError::io("trimming a full segment", &self.path, e))?;
            self.allocated = self.bytes;
        }
        Ok(())
    }
}

/// Syncs a directory, so a file created in it survives a power loss.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io("syncing the data dir", dir, e))
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    segment: Segment,
    options: JournalOptions,
    /// The last sequence number written.
    last: u64,
    /// Bytes written since the free space was last read.
    since_free_space: u64,
}

/// What the writer hands the syncer: how far it has written, into which
/// file.
#[derive(Debug)]
struct ToSync {
    written: u64,
    /// How long the file is once `written` is in it.
    bytes: u64,
    file: Option<Arc<File>>,
    /// The file's path, for a test that loses what was not synced.
    #[cfg(test)]
    path: PathBuf,
    closed: bool,
    /// Whether the syncer is waiting: only then does a write wake it.
    syncer_idle: bool,
}

impl Writer {
    /// Writes batches as they come, releasing "written" waiters at once;
    /// a syncer thread of its own syncs behind it (so writing never waits
    /// for a sync, and one sync covers every write before it).
    fn run(mut self) {
        let syncer = match self.options.fsync {
            Fsync::Never => None,
            policy => {
                let shared = Arc::clone(&self.shared);
                let first_synced = self.last;
                let observer = self.options.sync_observer.clone();
                std::thread::Builder::new()
                    .name("jobq-journal-sync".into())
                    .spawn(move || sync_loop(&shared, policy, first_synced, observer.as_deref()))
                    .map_err(|e| self.fail(&JournalError::io("starting the syncer", &self.dir, e)))
                    .ok()
            }
        };
        self.hand_to_syncer(false);
        while let Some((batch, first, last)) = self.next_batch() {
            if let Err(error) = self.write(&batch, first, last) {
                self.fail(&error);
                break;
            }
        }
        // Closed (or failed): the syncer makes the last writes durable.
        lock(&self.shared.to_sync).closed = true;
        self.shared.sync_more.notify_one();
        if let Some(syncer) = syncer {
            let _ = syncer.join();
        }
        // What was allocated ahead is not needed any more (replay would
        // cut it anyway).
        if let Err(error) = self.segment.trim() {
            tracing::warn!(%error, "could not give back a segment's unused space");
        }
        stop_waiters(&self.shared, JournalError::Stopped);
    }

    /// Waits for frames and takes them all, with the first and last
    /// sequence numbers among them; `None` once closed and drained.
    fn next_batch(&mut self) -> Option<(Vec<u8>, u64, u64)> {
        let mut pending = lock(&self.shared.pending);
        loop {
            if !pending.buf.is_empty() {
                let batch = std::mem::take(&mut pending.buf);
                return Some((batch, pending.first, pending.next_seq - 1));
            }
            if pending.closed {
                return None;
            }
            pending.writer_idle = true;
            pending = self
                .shared
                .more
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn write(&mut self, batch: &[u8], first: u64, last: u64) -> Result<(), JournalError> {
        #[cfg(test)]
        drop(lock(&self.shared.paused));
        if self.segment.bytes >= self.options.segment_bytes {
            // A full segment is synced before the next begins, so only the
            // newest segment can ever hold an unsynced tail.
            if self.options.fsync != Fsync::Never {
                self.segment
                    .file
                    .sync_data()
                    .map_err(|e| JournalError::io("syncing", &self.segment.path, e))?;
                #[cfg(test)]
                note_synced(&self.shared, &self.segment.path, self.segment.bytes);
                release(&self.shared, self.last, Some(self.last));
            }
            self.segment.trim()?;
            self.segment = Segment::create(&self.dir, first, self.options.segment_bytes)?;
            self.hand_to_syncer(false);
            self.shared.events.send_modify(|e| {
                e.segments_begun += 1;
                e.grown += 1;
            });
        }
        let step = (self.options.segment_bytes / GROWTH_STEPS).max(1);
        let before = self.segment.bytes / step;
        self.segment.write(batch)?;
        if self.segment.bytes / step > before {
            self.shared.events.send_modify(|e| e.grown += 1);
        }
        self.last = last;
        // Under `always`, durable waits for the syncer; otherwise a write
        // is all the policy asks.
        let always = self.options.fsync == Fsync::Always;
        let counters = &self.shared.counters;
        counters
            .records
            .fetch_add(last + 1 - first, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counters.writes.fetch_add(1, Ordering::Relaxed);
        counters.written.store(last, Ordering::Release);
        if !always {
            counters.durable.store(last, Ordering::Release);
        }
        release(&self.shared, last, (!always).then_some(last));
        self.hand_to_syncer(true);
        self.since_free_space += batch.len() as u64;
        if self.since_free_space >= FREE_SPACE_EVERY {
            self.since_free_space = 0;
            self.shared
                .free_bytes
                .store(free_space(&self.dir), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Tells the syncer how far the current file is written.
    fn hand_to_syncer(&self, wrote: bool) {
        let mut to_sync = lock(&self.shared.to_sync);
        to_sync.written = self.last;
        to_sync.bytes = self.segment.bytes;
        if !wrote {
            to_sync.file = Some(Arc::clone(&self.segment.file));
            #[cfg(test)]
            {
                to_sync.path = self.segment.path.clone();
                note_synced(&self.shared, &self.segment.path, self.segment.bytes);
            }
        }
        let wake = std::mem::take(&mut to_sync.syncer_idle) || !wrote;
        drop(to_sync);
        if wake {
            self.shared.sync_more.notify_one();
        }
    }

    /// A failed write or sync ends the writer: after the kernel has dropped
    /// dirty pages, a retried fsync proves nothing. Every waiter is told.
    fn fail(&self, error: &JournalError) {
        fail(&self.shared, error);
    }
}

impl ToSync {
    /// What a sync now would cover, for a test that loses what was not
    /// synced: the file and its length.
    #[cfg(test)]
    fn covered(&self) -> (PathBuf, u64) {
        (self.path.clone(), self.bytes)
    }

    #[cfg(not(test))]
    fn covered(&self) {}
}

/// Notes how long a segment is as of a sync, for a test that loses what
/// was not synced.
#[cfg(test)]
fn note_synced(shared: &Shared, path: &Path, bytes: u64) {
    let mut lengths = lock(&shared.synced_lengths);
    let length = lengths.entry(path.to_path_buf()).or_default();
    *length = (*length).max(bytes);
}

/// Stops the journal for good after a failed write or sync.
fn fail(shared: &Shared, error: &JournalError) {
    tracing::error!(%error, "the journal writer failed; nothing more will be made durable");
    let why: Arc<str> = Arc::from(error.to_string());
    stop_waiters(shared, JournalError::WriterFailed(Arc::clone(&why)));
    shared
        .events
        .send_modify(|e| e.failed = Some(Arc::clone(&why)));
}

/// The syncer thread: syncs whatever the writer has written, as soon as it
/// is written (`always`) or on the interval, and releases the callers each
/// sync covers. One sync covers every write before it.
fn sync_loop(shared: &Shared, policy: Fsync, mut synced: u64, observer: Option<&dyn SyncObserver>) {
    let mut last_sync = Instant::now();
    loop {
        let (target, file, closing, _covered) = {
            let mut to_sync = lock(&shared.to_sync);
            loop {
                let behind = to_sync.written > synced;
                if to_sync.closed || (behind && policy == Fsync::Always) {
                    break;
                }
                to_sync.syncer_idle = true;
                to_sync = match policy {
                    Fsync::Interval(every) if behind => {
                        let due = last_sync + every;
                        let now = Instant::now();
                        if now >= due {
                            break;
                        }
                        shared
                            .sync_more
                            .wait_timeout(to_sync, due - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    _ => shared
                        .sync_more
                        .wait(to_sync)
                        .unwrap_or_else(|e| e.into_inner()),
                };
            }
            (
                to_sync.written,
                to_sync.file.clone(),
                to_sync.closed,
                to_sync.covered(),
            )
        };
        if target > synced
            && let Some(file) = file
        {
            let started = Instant::now();
            if let Err(error) = file.sync_data() {
                fail(shared, &JournalError::io("syncing", &shared.dir, error));
                return;
            }
            #[cfg(test)]
            note_synced(shared, &_covered.0, _covered.1);
            if let Some(observer) = observer {
                observer.synced(started.elapsed());
            }
            synced = target;
            last_sync = Instant::now();
            // The figures first, so a caller released sees them.
            shared.counters.durable.fetch_max(target, Ordering::Release);
            shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
            release(shared, target, Some(target));
        }
        if closing {
            return;
        }
    }
}
