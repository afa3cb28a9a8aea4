//! The UDP relay: clients send to `listen`; each client address gets its
//! own upstream socket (so the server sees one peer per client), and every
//! datagram in either direction goes through that direction's [`Impairer`]
//! and a delay queue. Any UDP protocol passes (QUIC included); nothing is
//! parsed.

use super::profile::{DropWhy, Fate, Impairer, Profile};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::time::{Duration, Instant};

/// Clients one relay serves at once (each has an upstream socket).
pub const MAX_CLIENTS: usize = 4096;

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct DirStats {
    pub packets: AtomicU64,
    pub delivered: AtomicU64,
    pub lost: AtomicU64,
    pub blackout: AtomicU64,
    pub queue_drops: AtomicU64,
    pub duplicated: AtomicU64,
}

impl DirStats {
    fn json(&self) -> serde_json::Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({"packets": l(&self.packets), "delivered": l(&self.delivered), "lost": l(&self.lost), "blackout": l(&self.blackout), "queue_drops": l(&self.queue_drops), "duplicated": l(&self.duplicated)})
    }
}

#[derive(Debug, Default)]
pub struct RelayStats {
    pub up: DirStats,
    pub down: DirStats,
    pub clients: AtomicU64,
    pub refused_clients: AtomicU64,
    /// Upstream sockets that could not be made (fd limit, ...).
    pub upstream_errors: AtomicU64,
}

impl RelayStats {
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"client_to_server": self.up.json(), "server_to_client": self.down.json(), "clients": self.clients.load(Ordering::Relaxed), "refused_clients": self.refused_clients.load(Ordering::Relaxed), "upstream_errors": self.upstream_errors.load(Ordering::Relaxed)})
    }
}

/// A datagram waiting for its departure time (earliest first, then FIFO).
struct Pending {
    at: Instant,
    seq: u64,
    to: Option<SocketAddr>,
    bytes: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One direction: decides each packet's fate and sends it on time from `out`.
struct Direction {
    impairer: Mutex<Impairer>,
    tx: tokio::sync::mpsc::UnboundedSender<Pending>,
    seq: AtomicU64,
    start: Instant,
}

impl Direction {
    fn spawn(profile: Profile, seed: u64, start: Instant, out: Arc<UdpSocket>, stats: Arc<RelayStats>, up: bool, children: &Children) -> Arc<Direction> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
        let t = tokio::spawn(async move {
            let mut heap: BinaryHeap<Pending> = BinaryHeap::new();
            loop {
                let next = heap.peek().map(|p| p.at);
                tokio::select! {
                    p = rx.recv() => match p {
                        Some(p) => heap.push(p),
                        None => break,
                    },
                    () = async { if let Some(t) = next { tokio::time::sleep_until(t).await } else { std::future::pending::<()>().await } } => {
                        while heap.peek().is_some_and(|p| p.at <= Instant::now()) {
                            let Some(p) = heap.pop() else { break };
                            let sent = match p.to {
                                Some(to) => out.send_to(&p.bytes, to).await,
                                None => out.send(&p.bytes).await,
                            };
                            if sent.is_ok() {
                                let d = if up { &stats.up } else { &stats.down };
                                d.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        });
        if let Ok(mut c) = children.lock() {
            c.push(t.abort_handle());
        }
        Arc::new(Direction { impairer: Mutex::new(Impairer::new(profile, seed)), tx, seq: AtomicU64::new(0), start })
    }

    fn push(&self, bytes: Vec<u8>, to: Option<SocketAddr>, d: &DirStats) {
        d.packets.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let fate = match self.impairer.lock() {
            Ok(mut i) => i.packet(now - self.start, bytes.len()),
            Err(_) => return,
        };
        match fate {
            Fate::Drop(why) => {
                let c = match why {
                    DropWhy::Loss => &d.lost,
                    DropWhy::Blackout => &d.blackout,
                    DropWhy::Queue => &d.queue_drops,
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
            Fate::Send { at, again } => {
                if let Some(again) = again {
                    d.duplicated.fetch_add(1, Ordering::Relaxed);
                    let _ = self.tx.send(Pending { at: self.start.checked_add(again).unwrap_or(self.start), seq: self.seq.fetch_add(1, Ordering::Relaxed), to, bytes: bytes.clone() });
                }
                let _ = self.tx.send(Pending { at: self.start.checked_add(at).unwrap_or(self.start), seq: self.seq.fetch_add(1, Ordering::Relaxed), to, bytes });
            }
        }
    }
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    pub local: SocketAddr,
    pub stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
    /// Every task the relay started (per-client receivers, delay queues).
    children: Children,
}

type Children = Arc<Mutex<Vec<tokio::task::AbortHandle>>>;

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(c) = self.children.lock() {
            c.iter().for_each(tokio::task::AbortHandle::abort);
        }
    }
}

/// Binds `listen` and relays to `upstream` through `profile` (per-client,
/// per-direction schedules seeded from `seed` and the client's arrival order).
pub async fn start(listen: SocketAddr, upstream: SocketAddr, profile: Profile, seed: u64) -> std::io::Result<Relay> {
    let sock = Arc::new(UdpSocket::bind(listen).await?);
    let local = sock.local_addr()?;
    let stats = Arc::new(RelayStats::default());
    let st = Arc::clone(&stats);
    let start = Instant::now();
    let children: Children = Arc::default();
    let kids = Arc::clone(&children);
    let task = tokio::spawn(async move {
        let children = kids;
        let clients: Arc<Mutex<BTreeMap<SocketAddr, Arc<Direction>>>> = Arc::default();
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else { continue };
            let known = clients.lock().ok().and_then(|c| c.get(&from).cloned());
            let up = match known {
                Some(up) => up,
                None => {
                    let count = clients.lock().map_or(usize::MAX, |c| c.len());
                    if count >= MAX_CLIENTS {
                        st.refused_clients.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let bind: SocketAddr = if upstream.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap_or(listen);
                    let Ok(us) = UdpSocket::bind(bind).await else {
                        st.upstream_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if us.connect(upstream).await.is_err() {
                        st.upstream_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let us = Arc::new(us);
                    let k = st.clients.fetch_add(1, Ordering::Relaxed);
                    let up = Direction::spawn(profile.clone(), seed ^ (k << 1), start, Arc::clone(&us), Arc::clone(&st), true, &children);
                    let down = Direction::spawn(profile.clone(), seed ^ (k << 1) ^ 1, start, Arc::clone(&sock), Arc::clone(&st), false, &children);
                    let st2 = Arc::clone(&st);
                    let t = tokio::spawn(async move {
                        let mut b = vec![0u8; 65_536];
                        loop {
                            match us.recv(&mut b).await {
                                Ok(n) => down.push(b[..n].to_vec(), Some(from), &st2.down),
                                // An ICMP "port unreachable" (the server not
                                // up yet, or restarting) is no reason to stop.
                                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                                Err(_) => break,
                            }
                        }
                    });
                    if let Ok(mut c) = children.lock() {
                        c.push(t.abort_handle());
                    }
                    if let Ok(mut c) = clients.lock() {
                        c.insert(from, Arc::clone(&up));
                    }
                    up
                }
            };
            up.push(buf[..n].to_vec(), None, &st.up);
        }
    });
    Ok(Relay { local, stats, task, children })
}

/// Waits `d`, or forever for zero.
pub async fn run_for(d: Duration) {
    if d.is_zero() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(d).await;
}
