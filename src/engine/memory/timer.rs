//! The per-queue timer task.

use std::sync::Arc;

use tokio::time::sleep_until;

use super::slot::Slot;

/// Sleeps until the queue's earliest deadline (a delayed job's time, a
/// retry's backoff, a lease's expiry), applies what is due, and sleeps again.
/// An operation that adds an earlier deadline wakes it through
/// [`Slot::timer`]; with no deadline it sleeps until woken, costing nothing.
pub(super) async fn run(slot: Arc<Slot>) {
    loop {
        let next = slot.advance();
        tokio::select! {
            () = slot.closed.cancelled() => return,
            () = slot.timer.notified() => {}
            () = async {
                match next {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}
