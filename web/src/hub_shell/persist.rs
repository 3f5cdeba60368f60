//! One persistence task per room: carries out `Persist` and `SampleViewers` effects in
//! order, batching entries into transactions, so the room task never waits on the
//! database.

use std::time::Duration;

use streaming::hub::{Entry, ViewerSample};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::domain::event::EventId;
use crate::store::Store;

/// Jobs written per transaction at most.
const BATCH: usize = 256;
const ATTEMPTS: u32 = 3;

#[derive(Debug)]
pub enum Job {
    Entry(Box<Entry>),
    Sample(ViewerSample),
    /// Answered once every job before it is written (or given up on).
    Flushed(oneshot::Sender<()>),
}

/// Starts the writer; it ends after the returned sender is dropped and everything
/// queued is written.
pub fn spawn(tasks: &TaskTracker, store: Store, event: EventId) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel();
    tasks.spawn(run(store, event, rx));
    tx
}

async fn run(store: Store, event: EventId, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut jobs, BATCH).await > 0 {
        let mut entries = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Entry(entry) => entries.push(*entry),
                Job::Sample(sample) => {
                    write_entries(&store, &event, &mut entries).await;
                    retry("viewer sample", || {
                        store.record_viewer_sample(&event, &sample)
                    })
                    .await;
                }
                Job::Flushed(done) => {
                    write_entries(&store, &event, &mut entries).await;
                    let _ = done.send(());
                }
            }
        }
        write_entries(&store, &event, &mut entries).await;
    }
}

async fn write_entries(store: &Store, event: &EventId, entries: &mut Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    retry("hub entries", || store.apply_hub_entries(event, entries)).await;
    entries.clear();
}

/// The writes are idempotent, so a failed transaction is simply tried again.
async fn retry<F, Fut>(what: &str, mut write: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::StoreResult<()>>,
{
    for attempt in 1..=ATTEMPTS {
        match write().await {
            Ok(()) => return,
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(%error, attempt, what, "hub write failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(error) => tracing::error!(%error, what, "hub write failed; giving up"),
        }
    }
}
