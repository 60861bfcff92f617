//! [`ReadyQueue`]: jobs waiting for a worker, highest priority first, then in
//! the order they became ready.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

use super::JobId;

/// One FIFO lane per priority in use. Push and pop are O(1) within a lane,
/// plus O(log p) for p priorities in use (usually a handful), whatever the
/// number of jobs; lanes are contiguous, so a deep queue stays cache-friendly.
///
/// Removing a job from the middle (a cancel) is O(1) too: the caller
/// [`forget`](Self::forget)s it and the stale entry is skipped when its lane
/// reaches it. Each entry carries the sequence number the job got when it
/// became ready, so the caller can tell a stale entry from a live one.
#[derive(Debug, Default)]
pub(super) struct ReadyQueue {
    lanes: BTreeMap<Reverse<i32>, VecDeque<(u64, JobId)>>,
    len: usize,
}

impl ReadyQueue {
    /// Live entries.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds a job at the back of its priority's lane.
    pub(super) fn push(&mut self, priority: i32, seq: u64, id: JobId) {
        self.lanes
            .entry(Reverse(priority))
            .or_default()
            .push_back((seq, id));
        self.len += 1;
    }

    /// Counts one entry as gone; its stale copy is dropped when reached.
    pub(super) fn forget(&mut self) {
        self.len -= 1;
    }

    /// The first live entry of each lane (the longest-waiting job of each
    /// priority). O(p), though stale entries at a lane's front are stepped
    /// over.
    pub(super) fn fronts<'a>(
        &'a self,
        is_live: impl Fn(u64, JobId) -> bool + 'a,
    ) -> impl Iterator<Item = JobId> + 'a {
        self.lanes.values().filter_map(move |lane| {
            lane.iter()
                .find(|(seq, id)| is_live(*seq, *id))
                .map(|(_, id)| *id)
        })
    }

    /// Takes the next live entry; `is_live(seq, id)` tells stale entries
    /// (forgotten ones) apart, and those are dropped on the way.
    pub(super) fn pop(&mut self, mut is_live: impl FnMut(u64, JobId) -> bool) -> Option<JobId> {
        while self.len > 0 {
            let mut lane = self.lanes.first_entry()?;
            let next = lane.get_mut().pop_front();
            if lane.get().is_empty() {
                lane.remove();
            }
            if let Some((seq, id)) = next
                && is_live(seq, id)
            {
                self.len -= 1;
                return Some(id);
            }
        }
        // Only stale entries are left: drop them all.
        self.lanes.clear();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> JobId {
        JobId::from_u128(n)
    }

    #[test]
    fn pops_by_priority_then_fifo_and_skips_forgotten_entries() {
        let mut r = ReadyQueue::default();
        r.push(0, 1, id(1));
        r.push(5, 2, id(2));
        r.push(0, 3, id(3));
        r.push(5, 4, id(4));
        r.forget(); // id(4) was cancelled
        let live = |_, job: JobId| job != id(4);
        assert_eq!(r.len(), 3);
        assert_eq!(r.pop(live), Some(id(2)));
        assert_eq!(r.pop(live), Some(id(1)));
        assert_eq!(r.pop(live), Some(id(3)));
        assert_eq!(r.pop(live), None);
        assert_eq!(r.len(), 0);
    }
}
