//! The HTTP admin surface of `dualplane serve`: `/metrics` (Prometheus text
//! format), `/healthz` (the tick loop is alive and recent) and `/readyz`
//! (accepting players; 503 while draining). Label values are bounded
//! (archetypes, roles, outcomes, status names): no per-client labels.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Every metric the server exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub tick_seconds: Histogram,
    pub ticks: IntCounter,
    pub tick_overruns: IntCounter,
    pub entities: IntGaugeVec,
    pub clients: IntGaugeVec,
    pub handshakes: IntCounterVec,
    pub datagrams_out: IntCounter,
    pub bytes_out: IntCounter,
    pub datagrams_in: IntCounter,
    pub bytes_in: IntCounter,
    pub snapshot_bytes: Histogram,
    pub replication_seconds: Histogram,
    pub replication_skipped: IntCounter,
    pub send_rate_changes: IntCounterVec,
    pub clients_by_snapshot_interval: IntGaugeVec,
    pub tick_debt_dropped: IntCounter,
    pub client_faults: IntCounterVec,
    pub observations: IntCounterVec,
    pub datagrams_dropped: IntCounterVec,
    pub client_hash_failures: IntGauge,
    pub plans: IntCounterVec,
    pub graph_seconds: Histogram,
    pub graph_npcs: IntGauge,
    pub graphs_held: IntGauge,
    pub graph_ops: IntCounterVec,
    pub inputs: IntCounterVec,
    pub replay_bytes: IntGauge,
    pub heap_live: IntGauge,
    pub recorder_queue: IntGauge,
    pub recorder_stalls: IntGauge,
    pub replay_failures: IntCounter,
    pub frames: IntCounterVec,
    pub rejects: IntCounterVec,
    pub policy_latency: Histogram,
    pub agones_health_pings: IntCounter,
    pub agones_allocated: IntGauge,
    pub tls_dev_mode: IntGauge,
    pub cert_reloads: IntCounterVec,
    pub key_reloads: IntCounterVec,
    /// The certificate reloader whose counters `cert_reloads` mirrors.
    cert_reloader: Arc<std::sync::Mutex<Option<Arc<net::tls::CertReloader>>>>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => unreachable!("static metric definitions are valid: {e}"),
    }
}

impl Metrics {
    #[must_use]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let h = |name: &str, help: &str, buckets: Vec<f64>| must(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)));
        let c = |name: &str, help: &str| must(IntCounter::new(name, help));
        let cv = |name: &str, help: &str, l: &[&str]| must(IntCounterVec::new(Opts::new(name, help), l));
        let g = |name: &str, help: &str| must(IntGauge::new(name, help));
        let gv = |name: &str, help: &str, l: &[&str]| must(IntGaugeVec::new(Opts::new(name, help), l));
        let m = Metrics {
            tick_seconds: h("dualplane_tick_duration_seconds", "Wall time of one simulation tick (all phases).", vec![0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.0167, 0.025, 0.05, 0.1]),
            ticks: c("dualplane_ticks_total", "Ticks simulated."),
            tick_overruns: c("dualplane_tick_overruns_total", "Ticks that started after their deadline."),
            entities: gv("dualplane_entities", "Live entities by archetype.", &["archetype"]),
            clients: gv("dualplane_clients", "Connected clients by role.", &["role"]),
            handshakes: cv("dualplane_handshakes_total", "Connection handshakes by outcome.", &["outcome"]),
            datagrams_out: c("dualplane_datagrams_sent_total", "Snapshot datagrams sent."),
            bytes_out: c("dualplane_datagram_sent_bytes_total", "Snapshot datagram bytes sent."),
            datagrams_in: c("dualplane_datagrams_received_total", "Client datagrams received."),
            bytes_in: c("dualplane_datagram_received_bytes_total", "Client datagram bytes received."),
            snapshot_bytes: h("dualplane_snapshot_size_bytes", "Size of snapshot datagrams.", vec![64.0, 128.0, 256.0, 512.0, 768.0, 1024.0, 1200.0]),
            replication_seconds: h("dualplane_replication_duration_seconds", "Wall time to encode and send one tick's snapshots to every client (on the replication pool).", vec![0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.0167, 0.033]),
            replication_skipped: c("dualplane_replication_skipped_ticks_total", "Published ticks replaced before replication took them (replication behind the tick rate)."),
            send_rate_changes: cv("dualplane_send_rate_changes_total", "Per-client snapshot rate changes (down: a congested link gets a snapshot every 2nd or 3rd tick; up: back toward every tick).", &["direction"]),
            clients_by_snapshot_interval: gv("dualplane_clients_by_snapshot_interval", "Connected clients by how often they get a snapshot now: every 1, 2 or 3 ticks (60 / 30 / 20 Hz at 60 Hz).", &["ticks"]),
            tick_debt_dropped: c("dualplane_tick_debt_dropped_ticks_total", "Ticks the loop did not catch up on after a stall longer than 5 ticks (the schedule restarts from now; the world still steps every tick)."),
            client_faults: cv("dualplane_client_faults_total", "Client misbehaviour by reason (no_hello, bad_hello, malformed_frame, unexpected_frame, oversized_frame, control_busy, bad_observe; slow_reader counts frames a non-reading client lost).", &["reason"]),
            observations: cv("dualplane_policy_observations_total", "Policy observation frames by outcome (sent; busy: dropped while the observer thread was behind; slow_reader: lost to a policy that does not read).", &["outcome"]),
            datagrams_dropped: cv("dualplane_datagrams_dropped_total", "UDP datagrams that cannot be this server's QUIC, by reason (not_quic: too short for a header, bad_version, short_initial, unknown_cid); quinn ignores them.", &["reason"]),
            client_hash_failures: g("dualplane_client_hash_failures", "Reconstruction-hash failures reported by connected clients (sum)."),
            plans: cv("dualplane_plans_total", "Plans by status (IDL status name).", &["status"]),
            graph_seconds: h("dualplane_graph_duration_seconds", "Wall time of one tick's behaviour graphs (inputs, kernels, the neighbour grid), all graphs together.", vec![0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.0167]),
            graph_npcs: g("dualplane_graph_npcs", "Entities driven by behaviour graphs in the last tick."),
            graphs_held: g("dualplane_graphs", "Behaviour graphs the world holds (uploaded, bound or not)."),
            graph_ops: cv("dualplane_graph_ops_total", "Ops behaviour graphs emitted, by status (IDL status name: OK applied, else refused by validation).", &["status"]),
            inputs: cv("dualplane_inputs_total", "Client inputs by outcome.", &["outcome"]),
            replay_bytes: g("dualplane_replay_written_bytes", "Bytes written to the replay file."),
            heap_live: g("dualplane_heap_live_bytes", "Heap bytes allocated through Rust's allocator and not yet freed, read at each scrape (0 where the counting allocator is not installed; C libraries' own mallocs are not seen). A leak in Rust code grows it; allocator fragmentation grows RSS but not this."),
            recorder_queue: g("dualplane_recorder_queue_depth", "Replay records queued for the writer thread (recorder lag)."),
            recorder_stalls: g("dualplane_recorder_stalls", "Ticks that waited for the replay writer."),
            replay_failures: c("dualplane_replay_failures_total", "Replay recordings that failed and stopped (a write failed, e.g. a full disk); the match goes on."),
            frames: cv("dualplane_verification_frames_total", "Verification frames by outcome.", &["outcome"]),
            rejects: cv("dualplane_session_rejects_total", "Per-session rejects by reason.", &["reason"]),
            policy_latency: h(
                "dualplane_policy_plan_latency_seconds",
                "Policy-worker plan latency: from publishing the tick a plan was decided on (its correlation id) to the plan's arrival.",
                vec![0.002, 0.005, 0.01, 0.0167, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
            ),
            agones_health_pings: c("dualplane_agones_health_pings_total", "Health pings sent to the Agones SDK (only while the tick loop is alive)."),
            agones_allocated: g("dualplane_agones_allocated", "1 once Agones has allocated this GameServer."),
            tls_dev_mode: g("dualplane_tls_dev_mode", "1 while the server presents the self-signed dev certificate (no --tls-cert)."),
            cert_reloads: cv("dualplane_tls_cert_reloads_total", "Certificate files re-read after a change, by outcome (failed keeps the old one).", &["outcome"]),
            key_reloads: cv("dualplane_token_key_reloads_total", "Token key directory changes, by outcome (failed keeps the old keys).", &["outcome"]),
            cert_reloader: Arc::default(),
            registry,
        };
        // Pre-register every bounded label value so dashboards and alerts
        // see a series (at 0) before the first event.
        for st in sim_core::Status::ALL {
            m.plans.with_label_values(&[st.name()]);
            m.graph_ops.with_label_values(&[st.name()]);
        }
        for o in ["applied", "late_retargeted", "late_dropped", "queue_full"] {
            m.inputs.with_label_values(&[o]);
        }
        for f in crate::serve::stats::Fault::ALL {
            m.client_faults.with_label_values(&[f.label()]);
        }
        for j in net::guard::Junk::ALL {
            m.datagrams_dropped.with_label_values(&[j.label()]);
        }
        for o in ["sent", "busy", "slow_reader"] {
            m.observations.with_label_values(&[o]);
        }
        for o in ["rendered", "failed", "skipped"] {
            m.frames.with_label_values(&[o]);
        }
        let token_labels = net::token::TokenError::ALL.map(net::token::TokenError::label);
        for o in token_labels.iter().chain(&["accepted", "no_token", "schema_mismatch", "protocol_version", "server_full", "protocol", "tls_failed", "oversized_frame", "protocol_error"]) {
            m.handshakes.with_label_values(&[o]);
        }
        for o in ["ok", "failed"] {
            m.cert_reloads.with_label_values(&[o]);
            m.key_reloads.with_label_values(&[o]);
        }
        let build = must(IntGaugeVec::new(Opts::new("dualplane_build_info", "Build and protocol versions."), &["version", "ports_semver"]));
        build.with_label_values(&[env!("CARGO_PKG_VERSION"), sim_core::PORTS_SEMVER]).set(1);
        let r = &m.registry;
        for col in [
            Box::new(m.tick_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.ticks.clone()),
            Box::new(m.tick_overruns.clone()),
            Box::new(m.entities.clone()),
            Box::new(m.clients.clone()),
            Box::new(m.handshakes.clone()),
            Box::new(m.datagrams_out.clone()),
            Box::new(m.bytes_out.clone()),
            Box::new(m.datagrams_in.clone()),
            Box::new(m.bytes_in.clone()),
            Box::new(m.snapshot_bytes.clone()),
            Box::new(m.replication_seconds.clone()),
            Box::new(m.replication_skipped.clone()),
            Box::new(m.send_rate_changes.clone()),
            Box::new(m.clients_by_snapshot_interval.clone()),
            Box::new(m.tick_debt_dropped.clone()),
            Box::new(m.client_faults.clone()),
            Box::new(m.observations.clone()),
            Box::new(m.datagrams_dropped.clone()),
            Box::new(m.client_hash_failures.clone()),
            Box::new(m.plans.clone()),
            Box::new(m.graph_seconds.clone()),
            Box::new(m.graph_npcs.clone()),
            Box::new(m.graphs_held.clone()),
            Box::new(m.graph_ops.clone()),
            Box::new(m.inputs.clone()),
            Box::new(m.replay_bytes.clone()),
            Box::new(m.heap_live.clone()),
            Box::new(m.recorder_queue.clone()),
            Box::new(m.recorder_stalls.clone()),
            Box::new(m.replay_failures.clone()),
            Box::new(m.frames.clone()),
            Box::new(m.rejects.clone()),
            Box::new(m.policy_latency.clone()),
            Box::new(m.agones_health_pings.clone()),
            Box::new(m.agones_allocated.clone()),
            Box::new(m.tls_dev_mode.clone()),
            Box::new(m.cert_reloads.clone()),
            Box::new(m.key_reloads.clone()),
            Box::new(build),
        ] {
            must(r.register(col));
        }
        m
    }

    /// Mirrors this reloader's counters into `cert_reloads` (see [`Metrics::sync_cert_reloads`]).
    pub fn watch_cert_reloads(&self, r: Arc<net::tls::CertReloader>) {
        if let Ok(mut w) = self.cert_reloader.lock() {
            *w = Some(r);
        }
    }

    /// Raises `cert_reloads` to the reloader's counts.
    pub fn sync_cert_reloads(&self) {
        let Some(r) = self.cert_reloader.lock().ok().and_then(|w| w.clone()) else { return };
        for (o, n) in [("ok", r.reloads.load(Ordering::Relaxed)), ("failed", r.reload_errors.load(Ordering::Relaxed))] {
            let c = self.cert_reloads.with_label_values(&[o]);
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        if let Some(b) = crate::alloc_count::live_bytes() {
            self.heap_live.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// One tick's behaviour graphs into the metrics: time, entities driven,
/// graphs held, ops by status (refusals are rare: only they are walked).
pub(crate) fn record_graphs(m: &Metrics, world: &sim_core::World) {
    let runs = &world.journal().graphs;
    m.graphs_held.set(i64::try_from(world.graphs().hashes().count()).unwrap_or(i64::MAX));
    m.graph_npcs.set(runs.iter().map(|r| i64::from(r.npcs)).sum());
    if runs.is_empty() {
        return;
    }
    m.graph_seconds.observe(runs.iter().map(|r| r.exec_ns).sum::<u64>() as f64 / 1e9);
    let (emitted, rejected) = runs.iter().fold((0u64, 0u64), |(e, r), g| (e + u64::from(g.ops_emitted), r + u64::from(g.ops_rejected)));
    m.graph_ops.with_label_values(&[sim_core::Status::Ok.name()]).inc_by(emitted - rejected.min(emitted));
    if rejected > 0 {
        for op in world.graph_ops().iter().filter(|o| o.status != sim_core::Status::Ok) {
            m.graph_ops.with_label_values(&[op.status.name()]).inc();
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Liveness and readiness state shared with the tick thread.
#[derive(Debug, Default)]
pub struct Health {
    /// Milliseconds (process clock) of the last completed tick.
    pub last_tick_ms: AtomicU64,
    pub draining: AtomicBool,
}

/// The tick loop counts as alive while its last tick is younger than this.
pub const STALL_MS: u64 = 2000;

impl Health {
    /// Milliseconds since the last completed tick.
    #[must_use]
    pub fn tick_age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_tick_ms.load(Ordering::Relaxed))
    }

    /// The one liveness rule: `/healthz` and the Agones health pings both
    /// follow it, so a stalled simulation goes unhealthy everywhere.
    #[must_use]
    pub fn alive(&self, now_ms: u64) -> bool {
        self.tick_age_ms(now_ms) < STALL_MS
    }
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve_admin(listener: tokio::net::TcpListener, metrics: Metrics, health: Arc<Health>, now_ms: fn() -> u64, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let m = metrics.clone();
    let (h1, h2) = (Arc::clone(&health), Arc::clone(&health));
    let app = axum::Router::new()
        .route("/metrics", get(move || {
            let m = m.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()) }
        }))
        .route("/healthz", get(move || {
            let h = Arc::clone(&h1);
            async move {
                let now = now_ms();
                let age = h.tick_age_ms(now);
                if h.alive(now) { (StatusCode::OK, format!("ok: last tick {age} ms ago\n")) } else { (StatusCode::SERVICE_UNAVAILABLE, format!("stalled: last tick {age} ms ago\n")) }
            }
        }))
        .route("/readyz", get(move || {
            let h = Arc::clone(&h2);
            async move {
                if h.draining.load(Ordering::Relaxed) { (StatusCode::SERVICE_UNAVAILABLE, "draining\n") } else { (StatusCode::OK, "ready\n") }
            }
        }));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_tick_loop_is_not_alive() {
        let h = Health::default();
        h.last_tick_ms.store(10_000, Ordering::Relaxed);
        assert!(h.alive(10_000 + STALL_MS - 1));
        assert!(!h.alive(10_000 + STALL_MS));
        assert_eq!(h.tick_age_ms(9_000), 0, "a clock read before the tick is not negative");
    }
}
