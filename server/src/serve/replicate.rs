//! Replication: every session's snapshot datagram from each published
//! tick.

use net::hub::{Departed, Hub};
use net::proto::bye;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use super::*;

pub(crate) async fn replicate(
    mut rx: tokio::sync::watch::Receiver<WorldView>,
    hub: Arc<Mutex<Hub>>,
    conns: Arc<Mutex<BTreeMap<u32, quinn::Connection>>>,
    leave_tx: SyncSender<Departed>,
    stats: Arc<Stats>,
    metrics: crate::admin::Metrics,
) {
    while rx.changed().await.is_ok() {
        let (tick, world, avatars) = rx.borrow_and_update().clone();
        let now_ms = now_ms();
        let (out, gone) = match hub.lock() {
            Ok(mut h) => {
                let gone = h.expire(now_ms);
                (h.snapshots(now_ms, tick, &world, &avatars), gone)
            }
            Err(_) => return,
        };
        // send_datagram never blocks, so the lock is held only for the sends
        // (no copy of the connection map per tick).
        let Ok(conns_now) = conns.lock() else { return };
        for (id, bytes) in out {
            if let Some(c) = conns_now.get(&id) {
                let n = bytes.len() as u64;
                match c.send_datagram(bytes.into()) {
                    Ok(()) => {
                        stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                        stats.datagram_bytes_sent.fetch_add(n, Ordering::Relaxed);
                        metrics.datagrams_out.inc();
                        metrics.bytes_out.inc_by(n);
                        metrics.snapshot_bytes.observe(n as f64);
                    }
                    Err(_) => {
                        stats.datagram_send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        drop(conns_now);
        export_counters(&hub, &stats, &metrics);
        for d in gone {
            if let Some(c) = conns.lock().ok().and_then(|mut c| c.remove(&d.client_id)) {
                c.close(quinn::VarInt::from_u32(u32::from(bye::NORMAL)), b"idle timeout");
            }
            let _ = leave_tx.try_send(d);
        }
    }
}
