//! The server's counters shared by its threads, the exit summary, and
//! their export into the Prometheus metrics.

use net::hub::Hub;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters shared by the threads.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) ticks: AtomicU64,
    /// The tick being simulated, or the last one simulated between steps
    /// (connection tasks judge commands late or early against it).
    pub(crate) world_tick: AtomicU64,
    pub(crate) overruns: AtomicU64,
    pub(crate) inputs_applied: AtomicU64,
    pub(crate) inputs_late_retargeted: AtomicU64,
    pub(crate) inputs_late_dropped: AtomicU64,
    pub(crate) inputs_queue_full: AtomicU64,
    pub(crate) plans_rejected: AtomicU64,
    pub(crate) datagrams_sent: AtomicU64,
    pub(crate) datagram_bytes_sent: AtomicU64,
    pub(crate) datagram_send_errors: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) oversized_frames: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    /// Client misbehaviour by reason.
    pub(crate) faults: [AtomicU64; Fault::ALL.len()],
    /// Ticks the loop gave up catching up on after a stall (the process was
    /// stopped, or the box starved it): the tick debt is bounded, not paid.
    pub(crate) debt_dropped_ticks: AtomicU64,
    /// Policy observations sent, dropped because the observer thread was
    /// still busy with an earlier tick, and lost to a full outbox.
    pub(crate) observations_sent: AtomicU64,
    pub(crate) observations_busy: AtomicU64,
    pub(crate) observations_slow_reader: AtomicU64,
    pub(crate) observation_bytes: AtomicU64,
    /// The socket guard's verdicts (set once the endpoint is up).
    pub(crate) guard: std::sync::OnceLock<std::sync::Arc<net::guard::GuardCounters>>,
    pub(crate) tick_ns: TickTimes,
    /// Snapshot encode time summed over clients (CPU on the replication
    /// pool), encodes, and rounds (one per replicated tick).
    pub(crate) replication_ns: AtomicU64,
    pub(crate) replication_encodes: AtomicU64,
    pub(crate) replication_rounds: AtomicU64,
    /// Published ticks replaced before replication took them.
    pub(crate) replication_skipped: AtomicU64,
    /// Per-client send rate changes: slower, faster.
    pub(crate) send_rate_down: AtomicU64,
    pub(crate) send_rate_up: AtomicU64,
    pub(crate) frames_rendered: AtomicU64,
    pub(crate) frames_failed: AtomicU64,
    pub(crate) frames_skipped: AtomicU64,
    /// Wall time of the tick loop, microseconds.
    pub(crate) loop_us: AtomicU64,
    pub(crate) last_frame: Mutex<Option<(u64, String)>>,
    /// Why the replay recording stopped (a failed write); the match went on.
    pub(crate) recording_failure: Mutex<Option<String>>,
    /// Replay files started, in order.
    pub(crate) replays: Mutex<Vec<String>>,
}

/// What a client did wrong (`dualplane_client_faults_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Connected but opened no control stream, or sent no Hello, in time.
    NoHello,
    /// The first frame does not decode (a decodable frame that is not a
    /// Hello is a refused handshake: `handshakes{outcome="protocol"}`).
    BadHello,
    /// A control frame that does not decode (the connection is closed).
    MalformedFrame,
    /// A well-formed frame a client may not send after joining.
    UnexpectedFrame,
    /// A control frame over the size limit (the connection is closed).
    OversizedFrame,
    /// A frame to the client dropped because it does not read its stream.
    SlowReader,
    /// A control request while one is in flight (ignored).
    ControlBusy,
    /// An observation request past its caps, or from a non-policy (ignored).
    BadObserve,
}

impl Fault {
    pub(crate) const ALL: [Fault; 8] = [Fault::NoHello, Fault::BadHello, Fault::MalformedFrame, Fault::UnexpectedFrame, Fault::OversizedFrame, Fault::SlowReader, Fault::ControlBusy, Fault::BadObserve];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Fault::NoHello => "no_hello",
            Fault::BadHello => "bad_hello",
            Fault::MalformedFrame => "malformed_frame",
            Fault::UnexpectedFrame => "unexpected_frame",
            Fault::OversizedFrame => "oversized_frame",
            Fault::SlowReader => "slow_reader",
            Fault::ControlBusy => "control_busy",
            Fault::BadObserve => "bad_observe",
        }
    }
}

impl Stats {
    /// Counts a client fault (and the protocol-error or oversized-frame
    /// total it belongs to).
    pub(crate) fn fault(&self, f: Fault) {
        self.faults[f as usize].fetch_add(1, Ordering::Relaxed);
        match f {
            Fault::OversizedFrame => self.oversized_frames.fetch_add(1, Ordering::Relaxed),
            Fault::SlowReader | Fault::ControlBusy => 0,
            _ => self.protocol_errors.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Counts a frame an outbox refused because it was full (a client
    /// that does not read); a closed outbox (the client is leaving) is not
    /// the client's fault.
    pub(crate) fn outbox<T>(&self, r: Result<(), tokio::sync::mpsc::error::TrySendError<T>>) {
        if matches!(r, Err(tokio::sync::mpsc::error::TrySendError::Full(_))) {
            self.fault(Fault::SlowReader);
        }
    }

    fn faults_json(&self) -> serde_json::Value {
        Fault::ALL.iter().map(|f| (f.label().to_string(), serde_json::json!(self.faults[*f as usize].load(Ordering::Relaxed)))).collect::<serde_json::Map<_, _>>().into()
    }

    fn dropped_json(&self) -> serde_json::Value {
        let g = self.guard.get();
        net::guard::Junk::ALL.iter().map(|j| (j.label().to_string(), serde_json::json!(g.map_or(0, |g| g.junk(*j))))).collect::<serde_json::Map<_, _>>().into()
    }
}

/// Every tick's duration (ns) in an HDR histogram: constant memory and an
/// O(1) record for runs of any length (3 significant digits, 1 us to 60 s).
#[derive(Debug)]
pub(crate) struct TickTimes(Mutex<hdrhistogram::Histogram<u64>>);

impl Default for TickTimes {
    fn default() -> Self {
        let h = hdrhistogram::Histogram::new_with_bounds(1_000, 60_000_000_000, 3).unwrap_or_else(|_| hdrhistogram::Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid")));
        TickTimes(Mutex::new(h))
    }
}

impl TickTimes {
    pub(crate) fn record(&self, ns: u64) {
        if let Ok(mut h) = self.0.lock() {
            h.saturating_record(ns.max(1_000));
        }
    }

    /// (mean, p50, p99) in ns.
    fn summary(&self) -> (f64, f64, f64) {
        self.0.lock().map_or((0.0, 0.0, 0.0), |h| (h.mean(), h.value_at_quantile(0.5) as f64, h.value_at_quantile(0.99) as f64))
    }
}

pub(crate) fn summary(stats: &Stats, hub: &Mutex<Hub>, tick_rate: u32) -> serde_json::Value {
    let (mean, p50, p99) = stats.tick_ns.summary();
    let (handshakes, rejects, clients) = match hub.lock() {
        Ok(h) => (h.counters.handshakes.clone(), h.session_rejects(), h.sessions.len()),
        Err(_) => (BTreeMap::new(), BTreeMap::new(), 0),
    };
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let wall_s = l(&stats.loop_us) as f64 / 1e6;
    serde_json::json!({
        "tick_rate": tick_rate,
        "wall_s": wall_s,
        "tick_rate_achieved": l(&stats.ticks) as f64 / wall_s.max(1e-9),
        "ticks": l(&stats.ticks),
        "overruns": l(&stats.overruns),
        "tick_ms_mean": mean / 1e6,
        "tick_ms_p50": p50 / 1e6,
        "tick_ms_p99": p99 / 1e6,
        "inputs_applied": l(&stats.inputs_applied),
        "inputs_late_retargeted": l(&stats.inputs_late_retargeted),
        "inputs_late_dropped": l(&stats.inputs_late_dropped),
        "inputs_queue_full": l(&stats.inputs_queue_full),
        "plans_rejected": l(&stats.plans_rejected),
        "replication_us_per_client_tick": l(&stats.replication_ns) as f64 / 1e3 / l(&stats.replication_encodes).max(1) as f64,
        "replication_rounds": l(&stats.replication_rounds),
        "replication_skipped_ticks": l(&stats.replication_skipped),
        "send_rate_down": l(&stats.send_rate_down),
        "send_rate_up": l(&stats.send_rate_up),
        "datagrams_sent": l(&stats.datagrams_sent),
        "datagram_bytes_sent": l(&stats.datagram_bytes_sent),
        "datagram_send_errors": l(&stats.datagram_send_errors),
        "handshake_failures": l(&stats.handshake_failures),
        "oversized_frames": l(&stats.oversized_frames),
        "protocol_errors": l(&stats.protocol_errors),
        "client_faults": stats.faults_json(),
        "datagrams_dropped": stats.dropped_json(),
        "tick_debt_dropped_ticks": l(&stats.debt_dropped_ticks),
        "observations": {"sent": l(&stats.observations_sent), "busy": l(&stats.observations_busy), "slow_reader": l(&stats.observations_slow_reader), "bytes": l(&stats.observation_bytes)},
        "handshakes": handshakes,
        "session_rejects": rejects,
        "clients_at_exit": clients,
        "frames_rendered": l(&stats.frames_rendered),
        "frames_failed": l(&stats.frames_failed),
        "frames_skipped": l(&stats.frames_skipped),
        "replays": stats.replays.lock().map(|r| r.clone()).unwrap_or_default(),
        "recording_failed": stats.recording_failure.lock().ok().and_then(|f| f.clone()),
        "last_frame": stats.last_frame.lock().ok().and_then(|f| f.clone()).map(|(t, h)| serde_json::json!({"tick": t, "hash": h})),
    })
}

/// Raises a counter to a running total kept elsewhere.
pub(crate) fn raise(c: &prometheus::IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// Copies the hub's and the server's running totals into the metrics.
pub(crate) fn export_counters(hub: &Mutex<Hub>, stats: &Stats, m: &crate::admin::Metrics) {
    m.sync_cert_reloads();
    if let Ok(h) = hub.lock() {
        for (k, v) in &h.counters.handshakes {
            raise(&m.handshakes.with_label_values(&[k]), *v);
        }
        for (k, v) in h.session_rejects() {
            raise(&m.rejects.with_label_values(&[k]), v);
        }
        let mut roles: BTreeMap<&'static str, i64> = [("player", 0), ("policy", 0), ("observer", 0)].into_iter().collect();
        let mut failures = 0i64;
        let mut by_every: BTreeMap<u64, i64> = net::rate::DIVISORS.iter().map(|&d| (d, 0)).collect();
        for s in h.sessions.values() {
            let s = net::hub::lock(s);
            *roles.entry(s.role.name()).or_default() += 1;
            *by_every.entry(s.send_divisor()).or_default() += 1;
            failures += i64::from(s.stats.client_hash_failures);
        }
        for (r, n) in roles {
            m.clients.with_label_values(&[r]).set(n);
        }
        m.client_hash_failures.set(failures);
        for (every, n) in by_every {
            m.clients_by_snapshot_interval.with_label_values(&[&every.to_string()]).set(n);
        }
    }
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    raise(&m.handshakes.with_label_values(&["tls_failed"]), l(&stats.handshake_failures));
    raise(&m.handshakes.with_label_values(&["oversized_frame"]), l(&stats.oversized_frames));
    raise(&m.handshakes.with_label_values(&["protocol_error"]), l(&stats.protocol_errors));
    raise(&m.inputs.with_label_values(&["applied"]), l(&stats.inputs_applied));
    raise(&m.inputs.with_label_values(&["late_retargeted"]), l(&stats.inputs_late_retargeted));
    raise(&m.inputs.with_label_values(&["late_dropped"]), l(&stats.inputs_late_dropped));
    raise(&m.inputs.with_label_values(&["queue_full"]), l(&stats.inputs_queue_full));
    raise(&m.replication_skipped, l(&stats.replication_skipped));
    raise(&m.send_rate_changes.with_label_values(&["down"]), l(&stats.send_rate_down));
    raise(&m.send_rate_changes.with_label_values(&["up"]), l(&stats.send_rate_up));
    raise(&m.tick_debt_dropped, l(&stats.debt_dropped_ticks));
    raise(&m.observations.with_label_values(&["sent"]), l(&stats.observations_sent));
    raise(&m.observations.with_label_values(&["busy"]), l(&stats.observations_busy));
    raise(&m.observations.with_label_values(&["slow_reader"]), l(&stats.observations_slow_reader));
    for f in Fault::ALL {
        raise(&m.client_faults.with_label_values(&[f.label()]), l(&stats.faults[f as usize]));
    }
    if let Some(g) = stats.guard.get() {
        for j in net::guard::Junk::ALL {
            raise(&m.datagrams_dropped.with_label_values(&[j.label()]), g.junk(j));
        }
    }
    raise(&m.frames.with_label_values(&["rendered"]), l(&stats.frames_rendered));
    raise(&m.frames.with_label_values(&["failed"]), l(&stats.frames_failed));
    raise(&m.frames.with_label_values(&["skipped"]), l(&stats.frames_skipped));
}
