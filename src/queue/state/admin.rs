//! Operator actions on a [`Queue`]: pause, settings, purge, listing and
//! redrive. None of these is on a worker's or producer's path.

use std::ops::Bound;
use std::time::SystemTime;

use tokio::time::Instant;

use super::{JobChange, JobState, JobStatus, Place, Queue, state_of, status_of};
use crate::queue::{JobId, QueueConfig, QueueError};

/// Jobs a filtered listing looks at, at most, in one call.
pub const MAX_SCAN: usize = 10_000;

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Jobs removed.
    pub jobs: usize,
    /// Their bytes, now free.
    pub bytes: u64,
}

impl Queue {
    /// Whether leasing is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Pauses or resumes leasing. Enqueues are accepted either way; on
    /// resume, waiting workers are woken for the jobs that wait.
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            self.readied += self.ready.len();
        }
        self.paused = paused;
    }

    /// Replaces the queue's settings. Jobs already held keep their own
    /// attempt limits; a capacity below what is held refuses enqueues
    /// until enough jobs leave.
    pub fn set_config(&mut self, config: QueueConfig) {
        self.config = config;
    }

    /// Removes every ready job (not scheduled, leased or dead ones).
    pub fn purge_ready(&mut self, now: Instant) -> Purged {
        self.advance(now);
        let mut purged = Purged::default();
        loop {
            let jobs = &self.jobs;
            let Some(id) = self.ready.pop(|seq, id| {
                matches!(jobs.get(&id).map(|e| &e.place), Some(Place::Ready(s)) if *s == seq)
            }) else {
                break;
            };
            if let Some(entry) = self.jobs.remove(&id) {
                purged.jobs += 1;
                purged.bytes += entry.job.size;
                self.forget_failures(&entry);
                self.note(|| JobChange::Removed { id });
            }
        }
        self.bytes -= purged.bytes;
        purged
    }

    /// Removes every dead-lettered job.
    pub fn purge_dead(&mut self) -> Purged {
        let mut purged = Purged::default();
        for id in std::mem::take(&mut self.dead) {
            if let Some(entry) = self.jobs.remove(&id) {
                purged.jobs += 1;
                purged.bytes += entry.job.size;
                self.forget_failures(&entry);
                self.note(|| JobChange::Removed { id });
            }
        }
        self.bytes -= purged.bytes;
        purged
    }

    /// Up to `limit` jobs after `after` in id order (that is, enqueue order),
    /// optionally only those in `state`, without leasing them. Returns the
    /// page and the id to continue after, if more may follow.
    ///
    /// Dead jobs come from their own index; other states are filtered out
    /// of all jobs, and at most [`MAX_SCAN`] jobs are looked at per call, so
    /// no call holds the queue for a walk of the whole queue: a page may
    /// then be short, or empty, with a next page to read.
    pub fn list_jobs(
        &mut self,
        now: Instant,
        state: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> (Vec<JobStatus>, Option<JobId>) {
        self.advance(now);
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let (mut page, scanned_to) = match state {
            Some(JobState::Dead) => (
                self.dead
                    .range((start, Bound::Unbounded))
                    .filter_map(|id| self.jobs.get(id))
                    .take(limit + 1)
                    .map(status_of)
                    .collect(),
                None,
            ),
            Some(JobState::Acked | JobState::Cancelled) => (Vec::new(), None),
            _ => {
                // Filtering by state walks jobs of other states too: the
                // walk stops after MAX_SCAN of them, and the page says where
                // to go on, so no call holds the queue's lock for a walk of
                // the whole queue.
                let mut page = Vec::new();
                let mut last = None;
                for (visited, (id, entry)) in self.jobs.range((start, Bound::Unbounded)).enumerate()
                {
                    if visited == MAX_SCAN {
                        break;
                    }
                    last = Some(*id);
                    if state.is_none_or(|s| s == state_of(entry)) {
                        page.push(status_of(entry));
                        if page.len() > limit {
                            break;
                        }
                    }
                }
                let walked_out = page.len() <= limit
                    && last.is_some_and(|last| {
                        self.jobs
                            .range((Bound::Excluded(last), Bound::Unbounded))
                            .next()
                            .is_some()
                    });
                (page, walked_out.then_some(last).flatten())
            }
        };
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more {
            page.last().map(|s| s.job.id)
        } else {
            scanned_to
        };
        (page, next)
    }

    /// Moves dead-lettered jobs back to ready with their attempts reset.
    /// `ids` of `None` redrives every dead job. Refused, changing nothing,
    /// if any named job is not dead.
    pub fn redrive(&mut self, now: Instant, ids: Option<&[JobId]>) -> Result<usize, QueueError> {
        self.advance(now);
        let ids: Vec<JobId> = match ids {
            None => self.dead.iter().copied().collect(),
            Some(ids) => {
                for id in ids {
                    if !self.dead.contains(id) {
                        return Err(match self.jobs.contains_key(id) {
                            true => QueueError::JobNotDead {
                                queue: self.name.clone(),
                                job: *id,
                            },
                            false => QueueError::JobNotFound {
                                queue: self.name.clone(),
                                job: *id,
                            },
                        });
                    }
                }
                ids.to_vec()
            }
        };
        let mut moved = 0;
        for id in ids {
            if !self.dead.remove(&id) {
                continue; // named twice
            }
            let Some(entry) = self.jobs.get_mut(&id) else {
                continue;
            };
            entry.attempts = 0;
            entry.drops = 0;
            let priority = entry.job.priority;
            let place = self.make_ready(id, priority);
            self.set_place(id, place);
            self.note(|| JobChange::Redriven { id });
            moved += 1;
        }
        Ok(moved)
    }

    /// When the longest-waiting ready job was enqueued.
    pub fn oldest_ready_enqueue(&self) -> Option<SystemTime> {
        let jobs = &self.jobs;
        self.ready
            .fronts(|seq, id| {
                matches!(jobs.get(&id).map(|e| &e.place), Some(Place::Ready(s)) if *s == seq)
            })
            .filter_map(|id| jobs.get(&id).map(|e| e.job.enqueued_at))
            .min()
    }

    /// Idempotency keys remembered.
    pub fn idempotency_keys(&self) -> usize {
        self.keys.len()
    }
}
