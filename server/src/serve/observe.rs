//! Policy observations (the `Observe` / `Observation` frames): the tick
//! thread copies the world's columns once on a tick some policy's
//! observation is due, and this thread cuts each policy's part
//! (`net::observe::Observed::select`), hashes it and hands it to that
//! policy's outbox. Neither side waits: a tick that finds this thread busy
//! drops its observations (counted `busy`), and a policy that does not
//! read loses frames from its bounded outbox (counted `slow_reader`).

use super::Stats;
use net::observe::Observed;
use net::proto::Frame;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// One due policy: its source, radius and outbox.
pub(crate) type Due = (u32, f32, tokio::sync::mpsc::Sender<Frame>);

/// One tick's work: the whole world's columns and who is due.
pub(crate) type Job = (Arc<Observed>, Vec<Due>);

/// Starts the observer thread; the sender is the tick thread's.
pub(crate) fn spawn(stats: Arc<Stats>) -> anyhow::Result<SyncSender<Job>> {
    let (tx, rx) = sync_channel::<Job>(1);
    std::thread::Builder::new().name("observe".into()).spawn(move || run(&rx, &stats))?;
    Ok(tx)
}

fn run(rx: &Receiver<Job>, stats: &Stats) {
    while let Ok((all, due)) = rx.recv() {
        for (source, radius, tx) in due {
            let observed = all.select(source, radius);
            let bytes = net::observe::frame_bytes(observed.len()) as u64;
            let hash = observed.hash();
            match tx.try_send(Frame::Observation { hash, observed }) {
                Ok(()) => {
                    stats.observations_sent.fetch_add(1, Ordering::Relaxed);
                    stats.observation_bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    stats.observations_slow_reader.fetch_add(1, Ordering::Relaxed);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// The tick thread's side: after the step of `world`, sends the due
/// policies' job (never blocks).
pub(crate) fn after_step(world: &sim_core::World, outboxes: &super::conn::Outboxes, tx: &SyncSender<Job>, stats: &Stats) {
    let tick = world.tick().0;
    let due: Vec<Due> = match outboxes.lock() {
        Ok(o) => o.iter().filter_map(|(source, b)| b.observe.filter(|r| r.due(tick)).map(|r| (*source, r.radius, b.tx.clone()))).collect(),
        Err(_) => return,
    };
    if due.is_empty() {
        return;
    }
    let n = due.len() as u64;
    if tx.try_send((Arc::new(Observed::all(world)), due)).is_err() {
        stats.observations_busy.fetch_add(n, Ordering::Relaxed);
    }
}
