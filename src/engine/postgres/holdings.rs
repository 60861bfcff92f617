//! Which worker stream of this replica holds which lease, so that a lease
//! ended or extended by any call, a unary ack through this replica or
//! through another, gives the stream its credit back at once instead of
//! when the lease would have run out.
//!
//! The statements that end or extend a lease return the holder they found
//! (`holder_replica`, `holder`). A holder on this replica is told directly;
//! one on another replica through `NOTIFY` on that replica's own channel
//! (see [`channel`]), sent after the commit, never inside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::PgEngine;
use crate::queue::{LeaseToken, QueueName};

/// What became of a lease a stream holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Moved {
    /// Acked, nacked or dead-lettered: its credit is free.
    Ended,
    /// Its deadline moved to this wall-clock time.
    Extended(SystemTime),
}

/// One stream's live leases and their deadlines, as this replica knows
/// them: a lease past its deadline no longer takes a credit.
#[derive(Debug, Default)]
pub(super) struct Holding {
    held: Mutex<HashMap<LeaseToken, Instant>>,
    /// A lease ended, giving its credit back.
    pub(super) released: Notify,
}

impl Holding {
    /// Leases held now, forgetting those past their deadline; and the
    /// earliest deadline left.
    pub(super) fn live(&self) -> (usize, Option<Instant>) {
        let now = Instant::now();
        let mut held = super::lock(&self.held);
        held.retain(|_, deadline| *deadline > now);
        (held.len(), held.values().min().copied())
    }

    /// Records new leases.
    pub(super) fn hold(&self, leases: impl IntoIterator<Item = (LeaseToken, Instant)>) {
        super::lock(&self.held).extend(leases);
    }

    fn apply(&self, token: &LeaseToken, moved: Moved) {
        let mut held = super::lock(&self.held);
        match moved {
            Moved::Ended => {
                if held.remove(token).is_some() {
                    drop(held);
                    self.released.notify_one();
                }
            }
            Moved::Extended(at) => {
                if let Some(deadline) = held.get_mut(token) {
                    *deadline = instant(at);
                }
            }
        }
    }
}

/// Every stream of this replica, by holder number.
#[derive(Debug, Default)]
pub(super) struct Holdings {
    // Weak: a stream's holding goes with its attachment.
    streams: Mutex<HashMap<u64, Weak<Holding>>>,
}

impl Holdings {
    /// A new stream's holding.
    pub(super) fn register(&self, holder: u64) -> Arc<Holding> {
        let holding = Arc::new(Holding::default());
        super::lock(&self.streams).insert(holder, Arc::downgrade(&holding));
        holding
    }

    /// Forgets a stream that went away.
    pub(super) fn remove(&self, holder: u64) {
        super::lock(&self.streams).remove(&holder);
    }

    fn apply(&self, holder: u64, token: &LeaseToken, moved: Moved) {
        let holding = super::lock(&self.streams)
            .get(&holder)
            .and_then(Weak::upgrade);
        if let Some(holding) = holding {
            holding.apply(token, moved);
        }
    }
}

/// The channel replica `replica` listens on for its streams' leases.
pub(super) fn channel(replica: Uuid) -> String {
    format!("jobq_lease_{}", replica.simple())
}

/// `Instant` for a wall-clock time (now, if it has passed).
fn instant(at: SystemTime) -> Instant {
    let now = Instant::now();
    match at.duration_since(SystemTime::now()) {
        Ok(left) => now + left,
        Err(_) => now,
    }
}

impl PgEngine {
    /// A lease of `holder` (a stream of `replica`; neither, for a unary
    /// lease) ended or moved: tells its stream.
    pub(super) fn lease_moved(
        &self,
        queue: &QueueName,
        holder_replica: Option<Uuid>,
        holder: Option<i64>,
        token: LeaseToken,
        moved: Moved,
    ) {
        let (Some(replica), Some(holder)) = (holder_replica, holder) else {
            return;
        };
        let Ok(holder) = u64::try_from(holder) else {
            return;
        };
        if replica == self.replica() {
            self.shared.holdings.apply(holder, &token, moved);
            return;
        }
        let payload = match moved {
            Moved::Ended => format!("{holder} {token} end"),
            Moved::Extended(at) => {
                let micros = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros();
                format!("{holder} {token} ext {micros}")
            }
        };
        let (engine, queue) = (self.clone(), queue.clone());
        self.shared.tasks.spawn(async move {
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel(replica))
                .bind(payload)
                .execute(engine.pool())
                .await;
            if let Err(error) = sent {
                // The stream's credit comes back when the lease would have
                // run out.
                tracing::debug!(queue = %queue, %error, "could not tell the replica holding a lease that it ended");
            }
        });
    }

    /// A message on this replica's lease channel, from [`lease_moved`]
    /// on another.
    pub(super) fn lease_moved_elsewhere(&self, payload: &str) {
        let mut parts = payload.split(' ');
        let holder = parts.next().and_then(|h| h.parse::<u64>().ok());
        let token = parts.next().and_then(|t| t.parse::<LeaseToken>().ok());
        let moved = match (parts.next(), parts.next()) {
            (Some("end"), None) => Some(Moved::Ended),
            (Some("ext"), Some(micros)) => micros
                .parse::<u64>()
                .ok()
                .map(|m| Moved::Extended(SystemTime::UNIX_EPOCH + Duration::from_micros(m))),
            _ => None,
        };
        match (holder, token, moved) {
            (Some(holder), Some(token), Some(moved)) => {
                self.shared.holdings.apply(holder, &token, moved);
            }
            _ => tracing::debug!(payload, "ignored a lease message this replica cannot read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u64) -> LeaseToken {
        LeaseToken {
            job: crate::queue::JobId::from_u128(u128::from(n)),
            delivery: n,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_lease_frees_its_credit_and_an_extended_one_keeps_it_longer() {
        let holdings = Holdings::default();
        let holding = holdings.register(7);
        let soon = Instant::now() + Duration::from_secs(1);
        holding.hold([(token(1), soon), (token(2), soon)]);
        assert_eq!(holding.live().0, 2);

        holdings.apply(7, &token(1), Moved::Ended);
        assert_eq!(holding.live(), (1, Some(soon)));

        let later = SystemTime::now() + Duration::from_secs(60);
        holdings.apply(7, &token(2), Moved::Extended(later));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            holding.live().0,
            1,
            "the extended lease still holds its credit"
        );

        // Another holder's lease, and a stream gone, change nothing.
        holdings.apply(8, &token(2), Moved::Ended);
        assert_eq!(holding.live().0, 1);
        holdings.remove(7);
        holdings.apply(7, &token(2), Moved::Ended);
        assert_eq!(holding.live().0, 1);
    }
}
