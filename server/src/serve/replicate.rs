//! Replication: every session's snapshot datagram from each published
//! tick, encoded in parallel on the replication pool.
//!
//! The tick thread quantizes the world once per tick and leaves it in a
//! [`Latest`] slot (it never waits: a tick the replication thread has not
//! taken yet is replaced by the next one, and counted). The replication
//! thread takes the hub's lock only to list the live sessions, then encodes
//! each under that session's own lock, on `--threads` workers, and hands the
//! datagram to quinn (which never blocks).

use super::{now_ms, Stats, WorldView};
use net::hub::{lock, Departed, Hub, SharedSession};
use net::proto::bye;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The newest published tick, waiting for the replication thread.
#[derive(Default)]
pub(crate) struct Latest {
    slot: Mutex<Option<WorldView>>,
    ready: Condvar,
}

impl Latest {
    /// Publishes a tick; returns true when it replaced one never taken
    /// (replication is behind the tick rate).
    pub(crate) fn put(&self, v: WorldView) -> bool {
        let mut g = self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let skipped = g.replace(v).is_some();
        drop(g);
        self.ready.notify_one();
        skipped
    }

    /// The newest tick, waiting at most `timeout` for one.
    fn take(&self, timeout: Duration) -> Option<WorldView> {
        let g = self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut g, _) = self.ready.wait_timeout_while(g, timeout, |v| v.is_none()).unwrap_or_else(std::sync::PoisonError::into_inner);
        g.take()
    }
}

/// What the replication thread works with.
pub(crate) struct Replication {
    pub(crate) latest: Arc<Latest>,
    pub(crate) hub: Arc<Mutex<Hub>>,
    pub(crate) conns: Arc<Mutex<BTreeMap<u32, quinn::Connection>>>,
    pub(crate) leave_tx: SyncSender<Departed>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) metrics: crate::admin::Metrics,
    pub(crate) shutdown: Arc<AtomicBool>,
}

/// Counters are copied into the metrics every this many ticks (a quarter
/// second at 60 Hz): the hub's lock is not taken for them every tick.
const EXPORT_EVERY: u64 = 15;

/// Starts the replication thread and its pool of `threads` encoders.
pub(crate) fn spawn(r: Replication, threads: usize) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let pool = crate::threads::background_pool(threads, "repl")?;
    Ok(std::thread::Builder::new().name("replicate".into()).spawn(move || {
        crate::threads::lower_priority();
        run(&r, &pool)
    })?)
}

fn run(r: &Replication, pool: &rayon::ThreadPool) {
    let config = r.hub.lock().map(|h| h.config.clone()).unwrap_or_default();
    let mut rounds = 0u64;
    while !r.shutdown.load(Ordering::Relaxed) {
        let Some((tick, world, avatars)) = r.latest.take(Duration::from_millis(100)) else { continue };
        let t0 = Instant::now();
        let now = now_ms();
        let (gone, sessions): (Vec<Departed>, Vec<(u32, SharedSession)>) = match r.hub.lock() {
            Ok(mut h) => (h.expire(now), h.sessions.iter().map(|(id, s)| (*id, Arc::clone(s))).collect()),
            Err(_) => return,
        };
        let work: Vec<(SharedSession, quinn::Connection)> = match r.conns.lock() {
            Ok(c) => sessions.into_iter().filter_map(|(id, s)| c.get(&id).map(|k| (s, k.clone()))).collect(),
            Err(_) => return,
        };
        let (encode_ns, encodes) = (AtomicU64::new(0), AtomicU64::new(0));
        // Interest cells: built once per tick, shared by every encode.
        let grid = config.interest.map(|radii| net::interest::InterestGrid::build(&world, radii));
        // Each entity's hash, once: every encode adds those of what it sends.
        let hashes = net::quant::entity_hashes(&world);
        pool.install(|| {
            work.par_iter().for_each(|(s, c)| {
                let e0 = Instant::now();
                let mut session = lock(s);
                // Left since the listing (a reconnect's new connection may
                // be the one now registered under its id): nothing to send.
                if session.is_departed() {
                    return;
                }
                // The send rate adapts once a window to what the client
                // says it received, and to round trips.
                let (down, up) = session.adapt_rate(now);
                r.stats.send_rate_down.fetch_add(down, Ordering::Relaxed);
                r.stats.send_rate_up.fetch_add(up, Ordering::Relaxed);
                if !session.send_due(tick) {
                    return;
                }
                let bytes = session.snapshot(now, tick, (&world, &hashes), &avatars, grid.as_ref(), &config);
                drop(session);
                encode_ns.fetch_add(e0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                encodes.fetch_add(1, Ordering::Relaxed);
                send(r, c, bytes);
            });
        });
        let st = &r.stats;
        st.replication_ns.fetch_add(encode_ns.into_inner(), Ordering::Relaxed);
        // Only the encodes that ran (a departed or not-due client has none).
        st.replication_encodes.fetch_add(encodes.into_inner(), Ordering::Relaxed);
        st.replication_rounds.fetch_add(1, Ordering::Relaxed);
        r.metrics.replication_seconds.observe(t0.elapsed().as_secs_f64());
        rounds += 1;
        if rounds.is_multiple_of(EXPORT_EVERY) {
            super::export_counters(&r.hub, st, &r.metrics);
        }
        for d in gone {
            if let Some(c) = r.conns.lock().ok().and_then(|mut c| c.remove(&d.client_id)) {
                c.close(quinn::VarInt::from_u32(u32::from(bye::NORMAL)), b"idle timeout");
            }
            let _ = r.leave_tx.try_send(d);
        }
    }
    super::export_counters(&r.hub, &r.stats, &r.metrics);
}

fn send(r: &Replication, c: &quinn::Connection, bytes: Vec<u8>) {
    let n = bytes.len() as u64;
    match c.send_datagram(bytes.into()) {
        Ok(()) => {
            r.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
            r.stats.datagram_bytes_sent.fetch_add(n, Ordering::Relaxed);
            r.metrics.datagrams_out.inc();
            r.metrics.bytes_out.inc_by(n);
            r.metrics.snapshot_bytes.observe(n as f64);
        }
        Err(_) => {
            r.stats.datagram_send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
