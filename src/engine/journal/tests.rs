//! The journal alone: records read back in order, a torn tail is cut at
//! every byte offset of the last record, damage anywhere else refuses
//! start-up (or is dropped when the operator says so), concurrent appends
//! share writes and syncs, and one data dir takes one server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::record::{
    Booted, Change, DeadLettered, Enqueued, Entry, Failure, Id, JobRef, Key, Leased, QueueRef,
    QueueSettings, Record, Retried, Snapshot,
};
use super::*;
use prost::Message;

/// A fresh directory of this test process, removed when dropped.
struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> TestDir {
    let path = std::env::temp_dir().join(format!("jobq-journal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("test dir");
    TestDir(path)
}

fn job(queue: &str, n: u64) -> JobRef {
    JobRef {
        queue: queue.into(),
        id: Some(Id { high: n, low: !n }),
    }
}

/// One record of every kind.
fn every_kind() -> Vec<Record> {
    let failure = Some(Failure {
        attempt: 2,
        error: "timed out".into(),
        at_micros: 1_700_000_000_000_000,
    });
    [
        Change::QueueSettings(QueueSettings {
            queue: "emails".into(),
            capacity: 1000,
            lease_micros: 30_000_000,
            max_attempts: 5,
            backoff_base_micros: 1_000_000,
            backoff_cap_micros: 60_000_000,
            backoff_jitter: 0.2,
            paused: true,
        }),
        Change::Enqueued(Enqueued {
            job: Some(job("emails", 1)),
            payload: bytes::Bytes::from_static(b"alice@example.com"),
            metadata: vec![Entry {
                key: "kind".into(),
                value: "welcome".into(),
            }],
            priority: -3,
            max_attempts: 5,
            enqueued_at_micros: 1_700_000_000_000_000,
            due_micros: 1_700_000_060_000_000,
            idempotency_key: "signup-42".into(),
        }),
        Change::Leased(Leased {
            job: Some(job("emails", 1)),
            attempt: 1,
        }),
        Change::Retried(Retried {
            job: Some(job("emails", 1)),
            failure: failure.clone(),
            due_micros: 1_700_000_002_000_000,
            dropped: true,
        }),
        Change::DeadLettered(DeadLettered {
            job: Some(job("emails", 1)),
            failure,
        }),
        Change::Redriven(job("emails", 1)),
        Change::Removed(job("emails", 1)),
        Change::QueueDeleted(QueueRef {
            queue: "emails".into(),
        }),
        Change::Booted(Booted { epoch: 3 }),
        Change::Snapshot(Snapshot {
            job: Some(Enqueued {
                job: Some(job("emails", 2)),
                payload: bytes::Bytes::from_static(b"bob@example.com"),
                max_attempts: 5,
                enqueued_at_micros: 1_700_000_000_000_000,
                ..Enqueued::default()
            }),
            attempts: 2,
            failures: vec![Failure {
                attempt: 1,
                error: "smtp 451".into(),
                at_micros: 1_700_000_001_000_000,
            }],
            leased: true,
            dead: false,
            drops: 1,
        }),
        Change::Key(Key {
            job: Some(job("emails", 1)),
            key: "signup-42".into(),
            stored_at_micros: 1_700_000_000_000_000,
        }),
    ]
    .into_iter()
    .map(|change| Record {
        change: Some(change),
    })
    .collect()
}

fn removed(n: u64) -> Record {
    Record {
        change: Some(Change::Removed(job("q", n))),
    }
}

fn read_all(
    dir: &Path,
    mode: RecoveryMode,
) -> Result<(Vec<(u64, Record)>, Recovered), JournalError> {
    let mut read = Vec::new();
    let recovered = replay(dir, mode, |seq, record| read.push((seq, record)))?;
    Ok((read, recovered))
}

/// Writes `records` into a new journal in `dir`, waits until all are
/// durable, and closes it.
fn write(dir: &Path, next_seq: u64, records: &[Record], options: JournalOptions) {
    let journal = Journal::open(dir, next_seq, options).expect("open");
    let last = records.iter().map(|r| journal.append(r)).last();
    if let Some(last) = last {
        block_on(journal.durable(last)).expect("durable");
    }
    journal.close();
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn only_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

#[test]
fn every_kind_of_record_replays_in_order_with_its_sequence_number() {
    let dir = dir("every-kind");
    let records = every_kind();
    write(&dir, 1, &records, JournalOptions::default());
    let (read, recovered) = read_all(&dir, RecoveryMode::Strict).expect("replay");
    let expected: Vec<(u64, Record)> = (1..).zip(records).collect();
    assert_eq!(read, expected);
    let kinds = expected.len() as u64;
    assert_eq!(read, expected);
    assert_eq!(recovered.next_seq, kinds + 1);
    assert_eq!(recovered.torn_bytes, 0);

    // A restart goes on numbering where the last one stopped, in a new
    // segment, and both read back.
    write(
        &dir,
        recovered.next_seq,
        &[removed(9)],
        JournalOptions::default(),
    );
    let (read, recovered) = read_all(&dir, RecoveryMode::Strict).expect("replay");
    assert_eq!(read.len() as u64, kinds + 1);
    assert_eq!(read[kinds as usize].0, kinds + 1);
    assert_eq!((recovered.segments, recovered.next_seq), (2, kinds + 2));
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_offset_of_the_last_record() {
    let source = dir("torn-source");
    let records: Vec<Record> = (1..=3).map(removed).collect();
    write(&source, 1, &records, JournalOptions::default());
    let whole = std::fs::read(only_segment(&source)).expect("segment");
    let last_len = frame::HEADER + removed(3).encoded_len();
    let last_start = whole.len() - last_len;
    for cut in last_start..whole.len() {
        let dir = dir("torn");
        let segment = super::segment_path(&dir, 1);
        std::fs::write(&segment, &whole[..cut]).expect("copy");
        let (read, recovered) =
            read_all(&dir, RecoveryMode::Strict).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(read.len(), 2, "cut at {cut}");
        assert_eq!(
            recovered.torn_bytes,
            (cut - last_start) as u64,
            "cut at {cut}"
        );
        assert_eq!(recovered.next_seq, 3);
        assert_eq!(
            std::fs::metadata(&segment).expect("segment").len(),
            last_start as u64,
            "the file is cut back to the last whole record"
        );
        // The next start writes record 3 again and everything reads back.
        write(
            &dir,
            recovered.next_seq,
            &[removed(3)],
            JournalOptions::default(),
        );
        let (read, _) = read_all(&dir, RecoveryMode::Strict).expect("after the cut");
        assert_eq!(read, (1..=3).zip((1..=3).map(removed)).collect::<Vec<_>>());

        // The same cut inside space allocated ahead: zeros follow it.
        let padded_dir = self::dir("torn-padded");
        let padded = super::segment_path(&padded_dir, 1);
        let mut bytes = whole[..cut].to_vec();
        bytes.resize(whole.len() + 4096, 0);
        std::fs::write(&padded, &bytes).expect("copy");
        let (read, _) = read_all(&padded_dir, RecoveryMode::Strict)
            .unwrap_or_else(|e| panic!("padded cut at {cut}: {e}"));
        assert_eq!(read.len(), 2, "padded cut at {cut}");
        assert_eq!(
            std::fs::metadata(&padded).expect("segment").len(),
            last_start as u64
        );
    }
}

#[test]
fn a_flipped_bit_mid_log_refuses_start_up_naming_file_and_offset() {
    let dir = dir("flipped");
    let records: Vec<Record> = (1..=3).map(removed).collect();
    write(&dir, 1, &records, JournalOptions::default());
    let segment = only_segment(&dir);
    let mut bytes = std::fs::read(&segment).expect("segment");
    let second = SEGMENT_MAGIC.len() + frame::HEADER + removed(1).encoded_len();
    // A bit in the second record's payload.
    bytes[second + frame::HEADER + 2] ^= 0x10;
    std::fs::write(&segment, &bytes).expect("damage");

    let error = read_all(&dir, RecoveryMode::Strict).expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&format!("offset {second}")), "{message}");
    assert!(message.contains("--journal-recovery=truncate"), "{message}");
    assert_eq!(
        std::fs::read(&segment).expect("segment"),
        bytes,
        "nothing cut"
    );

    // Accepting the loss keeps what came before and says what went.
    let (read, recovered) = read_all(&dir, RecoveryMode::Truncate).expect("truncated");
    assert_eq!(read, vec![(1, removed(1))]);
    assert_eq!(recovered.next_seq, 2);
    assert_eq!(recovered.dropped.len(), 1);
    assert!(recovered.dropped[0].contains(&format!("offset {second}")));
}

#[test]
fn records_span_segments_and_damage_in_an_older_one_is_corruption() {
    let dir = dir("segments");
    let records: Vec<Record> = (1..=50).map(removed).collect();
    let options = JournalOptions {
        segment_bytes: 200,
        ..JournalOptions::default()
    };
    let journal = Journal::open(&dir, 1, options).expect("open");
    for record in &records {
        // One at a time, so the writer sees each alone and rolls segments.
        block_on(journal.durable(journal.append(record))).expect("durable");
    }
    journal.close();
    let (read, recovered) = read_all(&dir, RecoveryMode::Strict).expect("replay");
    assert_eq!(read.len(), 50);
    assert!(recovered.segments > 5, "{} segments", recovered.segments);

    // Cutting the middle of an older segment is not a torn tail.
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    segments.sort();
    let older = &segments[1];
    let len = std::fs::metadata(older).expect("segment").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(older)
        .expect("open");
    file.set_len(len - 3).expect("cut");
    let error = read_all(&dir, RecoveryMode::Strict).expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("older segment ends inside a record"),
        "{error}"
    );
}

#[test]
fn concurrent_appends_share_writes_and_syncs() {
    let dir = dir("group-commit");
    let journal = Journal::open(&dir, 1, JournalOptions::default()).expect("open");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    const TASKS: u64 = 16;
    const EACH: u64 = 200;
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..EACH {
                    let seq = journal.append(&removed(t * EACH + n));
                    journal.durable(seq).await.expect("durable");
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
    });
    let progress = journal.progress();
    journal.close();
    assert_eq!(progress.durable, TASKS * EACH);
    assert!(progress.writes <= TASKS * EACH);
    assert!(
        progress.syncs <= progress.writes,
        "a sync covers one write or more"
    );
    let (read, _) = read_all(&dir, RecoveryMode::Strict).expect("replay");
    assert_eq!(read.len() as u64, TASKS * EACH);
}

#[test]
fn records_appended_while_a_write_is_under_way_share_the_next_write_and_sync() {
    let dir = dir("one-sync");
    let journal = Journal::open(&dir, 1, JournalOptions::default()).expect("open");
    let paused = journal.pause_for_test();
    let mut last = 0;
    for n in 1..=100 {
        last = journal.append(&removed(n));
    }
    drop(paused);
    block_on(journal.durable(last)).expect("durable");
    let progress = journal.progress();
    journal.close();
    // The writer may have taken the first record before the pause held
    // it; everything after shares one write and one sync.
    assert!(
        progress.writes <= 2,
        "{} writes for 100 records",
        progress.writes
    );
    assert!(progress.syncs >= 1 && progress.syncs <= progress.writes);
    assert_eq!(progress.durable, 100);
}

#[test]
fn the_interval_policy_answers_after_the_write_and_syncs_on_its_timer() {
    let dir = dir("interval");
    let options = JournalOptions {
        fsync: Fsync::Interval(Duration::from_millis(20)),
        ..JournalOptions::default()
    };
    let journal = Journal::open(&dir, 1, options).expect("open");
    block_on(journal.durable(journal.append(&removed(1)))).expect("written");
    // No more writes come; the timer syncs anyway.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while journal.progress().syncs == 0 {
        assert!(std::time::Instant::now() < deadline, "never synced");
        std::thread::sleep(Duration::from_millis(5));
    }
    journal.close();
}

#[test]
fn a_data_dir_takes_one_server() {
    let dir = dir("lock");
    let held = DataDir::lock(&dir).expect("first");
    let error = DataDir::lock(&dir).expect_err("second");
    assert!(matches!(error, JournalError::Locked { .. }));
    assert!(
        error.to_string().contains("in use by another jobq"),
        "{error}"
    );
    drop(held);
    DataDir::lock(&dir).expect("free again");
}

#[test]
fn a_waiter_is_told_when_the_writer_has_failed() {
    let dir = dir("failed");
    let journal = Journal::open(&dir, 1, JournalOptions::default()).expect("open");
    let why: Arc<str> = Arc::from("disk gone");
    journal.fail_for_test(&why);
    let error = block_on(journal.durable(journal.append(&removed(1)))).expect_err("failed");
    assert!(error.to_string().contains("disk gone"), "{error}");
    journal.close();
}

#[test]
fn zeros_after_the_records_are_unused_space_and_a_garbled_last_record_a_torn_tail() {
    let source = dir("garbled-source");
    write(
        &source,
        1,
        &[removed(1), removed(2)],
        JournalOptions::default(),
    );
    let whole = std::fs::read(only_segment(&source)).expect("segment");

    // Space allocated ahead and never filled, in the last segment and in
    // an older one: nothing is torn, and the space is given back.
    let zeros = dir("zeros");
    let mut bytes = whole.clone();
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(super::segment_path(&zeros, 1), &bytes).expect("copy");
    let (read, recovered) = read_all(&zeros, RecoveryMode::Strict).expect("zeros are unused");
    assert_eq!((read.len(), recovered.torn_bytes), (2, 0));
    let cut = std::fs::metadata(super::segment_path(&zeros, 1)).expect("segment");
    assert_eq!(cut.len(), whole.len() as u64);
    std::fs::write(super::segment_path(&zeros, 1), &bytes).expect("copy");
    write(&zeros, 3, &[removed(3)], JournalOptions::default());
    let (read, _) = read_all(&zeros, RecoveryMode::Strict).expect("zeros are unused");
    assert_eq!(read.len(), 3);
    // But zeros with records after them in the same segment are damage.
    let mut holed = whole.clone();
    holed.extend(std::iter::repeat_n(0u8, 64));
    holed.extend_from_slice(&whole[SEGMENT_MAGIC.len()..]);
    let hole = dir("hole");
    std::fs::write(super::segment_path(&hole, 1), &holed).expect("copy");
    write(&hole, 3, &[removed(3)], JournalOptions::default());
    assert!(matches!(
        read_all(&hole, RecoveryMode::Strict),
        Err(JournalError::Corrupt { offset, .. }) if offset == whole.len() as u64
    ));

    // The last record's payload half written over.
    let garbled = dir("garbled");
    let mut bytes = whole.clone();
    let end = bytes.len();
    bytes[end - 1] ^= 0xff;
    std::fs::write(super::segment_path(&garbled, 1), &bytes).expect("copy");
    let (read, recovered) = read_all(&garbled, RecoveryMode::Strict).expect("garbled is torn");
    assert_eq!(read, vec![(1, removed(1))]);
    assert_eq!(
        recovered.torn_bytes,
        (frame::HEADER + removed(2).encoded_len()) as u64
    );
}
