//! `dualplane serve`: the dedicated server.
//!
//! Threads: the tick thread owns the World and steps it at a fixed rate; it
//! never waits on the network (it only `try_recv`s joins, leaves and inputs
//! queued by the connection tasks, and publishes each tick's quantized world
//! on a watch channel). The tokio runtime runs one task per connection and a
//! replication task that encodes every client's snapshot from the published
//! world and sends it as a datagram.

use crate::clock::{mean_p99, MonotonicClock};
use anyhow::Context;
use net::driver::{read_frame, server_config_for, write_frame, TransportSettings};
use net::tls::ServerIdentity;
use crate::serve_trust::{spawn_key_watch, ServerTrust};
use net::token::TokenGate;
use net::hub::{join_plan, joined_handles, leave_plans, Departed, Hub};
use net::proto::{bye, Frame};
use net::quant::{quantize_world, QEntity};
use net::session::CoreConfig;
use net::token::Claims;
use serde::Deserialize;
use sim_core::{MicroPlan, PlanQueue, Tick, World};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every setting: flag > env var > config file > default.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file with any of the settings below (snake_case keys).
    #[arg(long, env = "DUALPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address to listen on (default 127.0.0.1:4433; port 0 picks one).
    #[arg(long, env = "DUALPLANE_BIND")]
    bind: Option<SocketAddr>,
    /// Scenario file (default: the embedded arena).
    #[arg(long, env = "DUALPLANE_SCENARIO")]
    scenario: Option<PathBuf>,
    #[arg(long, env = "DUALPLANE_SEED")]
    seed: Option<u64>,
    /// Where the dev token key and self-signed certificate live (default
    /// $HOME/.dualplane/dev); generated when missing.
    #[arg(long, env = "DUALPLANE_DEV_DIR")]
    dev_dir: Option<PathBuf>,
    /// PEM certificate chain to present (leaf first; cert-manager's
    /// tls.crt). Re-read when it changes. Without it (and --tls-key) the
    /// server runs in dev mode with the self-signed dev certificate.
    #[arg(long, env = "DUALPLANE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (tls.key).
    #[arg(long, env = "DUALPLANE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Directory of token keys, one `<key id>.key` file each (hex); tokens
    /// signed by any of them are accepted, and the directory is re-read
    /// every 2 s (rotation without restart). Default: the dev dir's
    /// token.key as key id 0.
    #[arg(long, env = "DUALPLANE_TOKEN_KEYS")]
    token_keys: Option<PathBuf>,
    /// This server's id: tokens must name it (default "dev"; under Agones
    /// the GameServer's name).
    #[arg(long, env = "DUALPLANE_SERVER_ID")]
    server_id: Option<String>,
    /// The match tokens must name (default ""; under Agones the allocation's
    /// dualplane.dev/session annotation moves the server to that match).
    #[arg(long = "match-id", env = "DUALPLANE_MATCH_ID")]
    match_id: Option<String>,
    #[arg(long, env = "DUALPLANE_MAX_CLIENTS")]
    max_clients: Option<usize>,
    #[arg(long, env = "DUALPLANE_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// A player who leaves keeps its avatar this long for a reconnect with
    /// a fresh token for the same client id (0: removed at once).
    #[arg(long, env = "DUALPLANE_RECONNECT_GRACE_MS")]
    reconnect_grace_ms: Option<u64>,
    #[arg(long, env = "DUALPLANE_KEEP_ALIVE_MS")]
    keep_alive_ms: Option<u64>,
    /// Input plans accepted per client per second.
    #[arg(long, env = "DUALPLANE_INPUTS_PER_SEC")]
    inputs_per_sec: Option<u32>,
    /// Datagrams accepted per client per second.
    #[arg(long, env = "DUALPLANE_DATAGRAMS_PER_SEC")]
    datagrams_per_sec: Option<u32>,
    /// Bytes per snapshot datagram.
    #[arg(long, env = "DUALPLANE_SNAPSHOT_BUDGET")]
    snapshot_budget: Option<usize>,
    /// Replicate only entities within this many metres of each client's avatar.
    #[arg(long, env = "DUALPLANE_INTEREST_RADIUS")]
    interest_radius: Option<f32>,
    /// Record every session into this directory (one replay per run).
    #[arg(long, env = "DUALPLANE_RECORD")]
    record: Option<PathBuf>,
    /// Stop after this many ticks (0 = run until SIGTERM/SIGINT).
    #[arg(long, env = "DUALPLANE_TICKS")]
    ticks: Option<u64>,
    /// Write run statistics as JSON here on exit.
    #[arg(long, env = "DUALPLANE_STATS_JSON")]
    stats_json: Option<PathBuf>,
    /// Render a verification frame every N ticks, off the tick thread
    /// (a slow renderer skips frames; it never stalls a tick).
    #[arg(long, env = "DUALPLANE_VERIFY_FRAMES_EVERY")]
    verify_frames_every: Option<u64>,
    /// HTTP admin address for /metrics, /healthz, /readyz (default
    /// 127.0.0.1:9464; port 0 picks one).
    #[arg(long, env = "DUALPLANE_ADMIN_BIND")]
    admin_bind: Option<SocketAddr>,
    /// Longest a SIGTERM/SIGINT drain may take before exiting anyway.
    #[arg(long, env = "DUALPLANE_DRAIN_TIMEOUT_MS")]
    drain_timeout_ms: Option<u64>,
    /// Where verification frames (PNG) and frames.jsonl are written.
    #[arg(long, env = "DUALPLANE_FRAMES_DIR")]
    frames_dir: Option<PathBuf>,
    /// Run under Agones: read GameServer annotations, mark Ready, ping
    /// health from the tick loop, Shutdown after drain (needs a build with
    /// `--features agones` and the SDK sidecar).
    #[arg(long)]
    agones: bool,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<SocketAddr>,
    scenario: Option<PathBuf>,
    seed: Option<u64>,
    dev_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    token_keys: Option<PathBuf>,
    server_id: Option<String>,
    match_id: Option<String>,
    max_clients: Option<usize>,
    idle_timeout_ms: Option<u64>,
    reconnect_grace_ms: Option<u64>,
    keep_alive_ms: Option<u64>,
    inputs_per_sec: Option<u32>,
    datagrams_per_sec: Option<u32>,
    snapshot_budget: Option<usize>,
    interest_radius: Option<f32>,
    record: Option<PathBuf>,
    ticks: Option<u64>,
    stats_json: Option<PathBuf>,
    verify_frames_every: Option<u64>,
    frames_dir: Option<PathBuf>,
    admin_bind: Option<SocketAddr>,
    drain_timeout_ms: Option<u64>,
}

/// Counters shared by the threads.
#[derive(Debug, Default)]
struct Stats {
    ticks: AtomicU64,
    /// The tick being simulated, or the last one simulated between steps
    /// (connection tasks judge commands late or early against it).
    world_tick: AtomicU64,
    overruns: AtomicU64,
    inputs_applied: AtomicU64,
    inputs_late_retargeted: AtomicU64,
    inputs_late_dropped: AtomicU64,
    inputs_queue_full: AtomicU64,
    plans_rejected: AtomicU64,
    datagrams_sent: AtomicU64,
    datagram_bytes_sent: AtomicU64,
    datagram_send_errors: AtomicU64,
    handshake_failures: AtomicU64,
    oversized_frames: AtomicU64,
    protocol_errors: AtomicU64,
    tick_ns: Mutex<Vec<u64>>,
    frames_rendered: AtomicU64,
    frames_failed: AtomicU64,
    frames_skipped: AtomicU64,
    /// Wall time of the tick loop, microseconds.
    loop_us: AtomicU64,
    last_frame: Mutex<Option<(u64, String)>>,
}

/// Called on the tick thread every N ticks with the world; must not block.
type FrameSink = Box<dyn FnMut(&World) + Send>;

/// Starts the verification-frame thread; returns the tick thread's sink.
#[cfg(feature = "render")]
fn frame_sink(stats: Arc<Stats>, dir: Option<PathBuf>) -> anyhow::Result<FrameSink> {
    use replays::render::{camera, write_png, Renderer, Scene};
    if let Some(d) = &dir {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    let (tx, rx) = sync_channel::<Scene>(2);
    let st = Arc::clone(&stats);
    std::thread::Builder::new().name("frames".into()).spawn(move || {
        let renderer = match Renderer::new() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("dualplane: verification frames disabled: {e}");
                None
            }
        };
        let mut log = dir.as_ref().and_then(|d| std::fs::OpenOptions::new().create(true).append(true).open(d.join("frames.jsonl")).ok());
        while let Ok(scene) = rx.recv() {
            let Some(r) = &renderer else {
                st.frames_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let done = camera(&scene, &[], "overview").and_then(|cam| r.render(&scene, &cam, 256, 256));
            match done {
                Ok((img, journal)) => {
                    st.frames_rendered.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = st.last_frame.lock() {
                        *l = Some((journal.tick, journal.frame_hash.clone()));
                    }
                    if let Some(d) = &dir {
                        let _ = write_png(&d.join(format!("frame-{:08}.png", journal.tick)), &img);
                    }
                    if let Some(f) = log.as_mut() {
                        use std::io::Write;
                        let _ = writeln!(f, "{}", serde_json::json!(journal));
                    }
                }
                Err(_) => {
                    st.frames_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })?;
    Ok(Box::new(move |w: &World| {
        if tx.try_send(Scene::from_world(w)).is_err() {
            stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
        }
    }))
}

#[cfg(not(feature = "render"))]
fn frame_sink(_stats: Arc<Stats>, _dir: Option<PathBuf>) -> anyhow::Result<FrameSink> {
    anyhow::bail!("--verify-frames-every needs a build with the `render` feature")
}

struct JoinReq {
    claims: Claims,
    reply: tokio::sync::oneshot::Sender<Vec<u64>>,
}

const LATE_SLACK: u64 = 30;

/// What the tick thread publishes after each tick: the tick, the quantized
/// world, and every avatar's exact state (for the player blocks).
type WorldView = (u64, Arc<Vec<QEntity>>, Arc<Vec<net::session::AvatarState>>);

/// The server id of a server (and the tokens minted for it) when none is
/// configured.
pub const DEFAULT_SERVER_ID: &str = net::token::DEV_SERVER_ID;


pub fn run(a: &ServeArgs) -> anyhow::Result<ExitCode> {
    let file: FileConfig = match &a.config {
        Some(p) => toml::from_str(&std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?)
            .with_context(|| format!("{}: invalid config", p.display()))?,
        None => FileConfig::default(),
    };
    let bind = a.bind.or(file.bind).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4433)));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut scenario = a.scenario.clone().or(file.scenario);
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut seed = a.seed.or(file.seed);
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut max_clients = a.max_clients.or(file.max_clients);
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut server_id = a.server_id.clone().or(file.server_id);
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut match_id = a.match_id.clone().or(file.match_id);
    #[cfg(not(feature = "agones"))]
    if a.agones {
        anyhow::bail!("--agones: this binary was built without the `agones` feature (cargo build --release -p server --features agones)");
    }
    // GameServer annotations are the orchestrator's per-instance choice:
    // they override flags, env and file.
    #[cfg(feature = "agones")]
    let mut agones = if a.agones {
        let (sdk, o) = rt.block_on(crate::agones::Agones::connect(Duration::from_secs(10)))?;
        say(&format!("agones: GameServer {:?}: scenario {:?} seed {:?} max_clients {:?}", sdk.name, o.scenario, o.seed, o.max_clients));
        for r in &o.rejected {
            say(&format!("agones: ignoring annotation {r}"));
        }
        scenario = o.scenario.or(scenario);
        seed = o.seed.or(seed);
        max_clients = o.max_clients.or(max_clients);
        // Tokens are bound to this GameServer and to its allocated match.
        server_id = Some(sdk.name.clone()).filter(|n| !n.is_empty()).or(server_id);
        match_id = o.session.clone().or(match_id);
        Some(sdk)
    } else {
        None
    };
    let dev_dir = a.dev_dir.clone().or(file.dev_dir).unwrap_or_else(net::driver::default_dev_dir);
    let core = CoreConfig {
        budget: a.snapshot_budget.or(file.snapshot_budget).unwrap_or(1100),
        idle_timeout_ms: a.idle_timeout_ms.or(file.idle_timeout_ms).unwrap_or(10_000),
        max_clients: max_clients.unwrap_or(256),
        inputs_per_sec: a.inputs_per_sec.or(file.inputs_per_sec).unwrap_or(240),
        datagrams_per_sec: a.datagrams_per_sec.or(file.datagrams_per_sec).unwrap_or(600),
        interest_radius_m: a.interest_radius.or(file.interest_radius),
        schema_hash: sim_core::PORTS_SCHEMA_HASH,
        reconnect_grace_ms: a.reconnect_grace_ms.or(file.reconnect_grace_ms).unwrap_or(10_000),
    };
    let transport = TransportSettings {
        idle_timeout: Duration::from_millis(core.idle_timeout_ms),
        keep_alive: Duration::from_millis(a.keep_alive_ms.or(file.keep_alive_ms).unwrap_or(2000)),
    };
    let record = a.record.clone().or(file.record);
    let max_ticks = a.ticks.or(file.ticks).unwrap_or(0);
    let stats_json = a.stats_json.clone().or(file.stats_json);
    let frames_every = a.verify_frames_every.or(file.verify_frames_every).unwrap_or(0);
    let frames_dir = a.frames_dir.clone().or(file.frames_dir);
    let admin_bind = a.admin_bind.or(file.admin_bind).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464)));
    let drain_timeout = Duration::from_millis(a.drain_timeout_ms.or(file.drain_timeout_ms).unwrap_or(5000));
    let metrics = crate::admin::Metrics::new();
    let health = Arc::new(crate::admin::Health::default());
    let shutdown_flag = Arc::new(AtomicBool::new(false));

    let ServerTrust { identity, ring, token_keys, tls_desc, keys_desc } = ServerTrust::load(a.tls_cert.clone().or(file.tls_cert), a.tls_key.clone().or(file.tls_key), a.token_keys.clone().or(file.token_keys), &dev_dir)?;
    metrics.tls_dev_mode.set(i64::from(matches!(identity, ServerIdentity::Dev { .. })));
    let server_id = server_id.unwrap_or_else(|| DEFAULT_SERVER_ID.to_string());
    let match_id = match_id.unwrap_or_default();
    for (what, id) in [("server id", &server_id), ("match id", &match_id)] {
        if id.len() > net::token::MAX_ID {
            anyhow::bail!("{what} {id:?}: {} bytes; tokens carry at most {}", id.len(), net::token::MAX_ID);
        }
    }
    let (world, name, scenario_hash) = crate::simulate::load_scenario_world(scenario.as_ref(), seed)?;
    let tick_rate = world.config().tick_rate;
    let character = Some(world.character_params(world.config().players.shape));
    let hub = Arc::new(Mutex::new(Hub::new(core.clone(), TokenGate::new(ring.clone(), &server_id, &match_id))));
    if let Some(d) = token_keys {
        spawn_key_watch(d, ring, Arc::clone(&hub), metrics.clone(), Arc::clone(&shutdown_flag));
    }
    let stats = Arc::new(Stats::default());
    let frames = if frames_every > 0 { Some(frame_sink(Arc::clone(&stats), frames_dir)?) } else { None };
    let shutdown = shutdown_flag;
    let (join_tx, join_rx) = sync_channel::<JoinReq>(256);
    let (leave_tx, leave_rx) = sync_channel::<Departed>(1024);
    let (input_tx, input_rx) = sync_channel::<MicroPlan>(16_384);
    let (world_tx, world_rx) = tokio::sync::watch::channel::<WorldView>((0, Arc::new(Vec::new()), Arc::new(Vec::new())));
    let outboxes: Outboxes = Arc::default();
    let published: Published = Arc::default();
    let recorder = match &record {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let path = dir.join(format!("session-{unix}.rpl"));
            Some(replays::Recorder::create(&path, &world, &name, scenario_hash, replays::RecorderConfig::default())?)
        }
        None => None,
    };

    let tick_thread = {
        let (stats, shutdown) = (Arc::clone(&stats), Arc::clone(&shutdown));
        let obs = TickObserver { metrics: metrics.clone(), health: Arc::clone(&health), outboxes: Arc::clone(&outboxes), published: Arc::clone(&published), reconnect_grace_ms: core.reconnect_grace_ms };
        std::thread::Builder::new().name("tick".into()).spawn(move || {
            tick_loop(world, recorder, join_rx, leave_rx, input_rx, world_tx, &stats, &shutdown, max_ticks, frames.map(|f| (frames_every, f)), &obs)
        })?
    };

    let result = rt.block_on(async {
        let (sc, reloader) = server_config_for(&identity, transport)?;
        let endpoint = quinn::Endpoint::server(sc, bind).with_context(|| format!("cannot listen on {bind}"))?;
        let local = endpoint.local_addr()?;
        say(&format!("dualplane serving {name:?} at {tick_rate} Hz on {local} (QUIC, ALPN dualplane/1)"));
        say(&format!("{tls_desc}; tokens for server id {server_id:?}, match {match_id:?}, keys {keys_desc}; connect bots with: dualplane bot --server {local} --count 8"));
        if let Some(r) = reloader {
            metrics.watch_cert_reloads(r);
        }
        // The admin server has its own thread and runtime: a scrape or a
        // health probe never queues behind replication work on a loaded box.
        let admin = std::net::TcpListener::bind(admin_bind).with_context(|| format!("cannot listen on {admin_bind} (admin)"))?;
        admin.set_nonblocking(true)?;
        say(&format!("admin http on {} (/metrics /healthz /readyz)", admin.local_addr()?));
        let admin_done = {
            let (m, h, sd) = (metrics.clone(), Arc::clone(&health), Arc::clone(&shutdown));
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            std::thread::Builder::new().name("admin".into()).spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                let _ = rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(admin)?;
                    crate::admin::serve_admin(listener, m, h, now_ms, async move {
                        while !sd.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    })
                    .await
                });
                let _ = done_tx.send(());
            })?;
            done_rx
        };
        #[cfg(feature = "agones")]
        let agones_tasks = match agones.as_mut() {
            Some(sdk) => {
                sdk.ready().await?;
                say("agones: Ready");
                vec![sdk.spawn_health(Arc::clone(&health), now_ms, Duration::from_secs(2), metrics.clone()), sdk.spawn_watch(metrics.clone(), {
                    let hub = Arc::clone(&hub);
                    Box::new(move |m: &str| {
                        if let Ok(mut h) = hub.lock() {
                            h.set_match(m);
                        }
                    })
                })]
            }
            None => Vec::new(),
        };
        let conns: Arc<Mutex<BTreeMap<u32, quinn::Connection>>> = Arc::default();
        let repl = tokio::spawn(replicate(world_rx, Arc::clone(&hub), Arc::clone(&conns), leave_tx.clone(), Arc::clone(&stats), metrics.clone()));
        let accept = {
            let (endpoint, hub, conns, stats, metrics, health) = (endpoint.clone(), Arc::clone(&hub), Arc::clone(&conns), Arc::clone(&stats), metrics.clone(), Arc::clone(&health));
            tokio::spawn(async move {
                while let Some(incoming) = endpoint.accept().await {
                    let ctx = ConnCtx { tick_rate, character, metrics: metrics.clone(), health: Arc::clone(&health), hub: Arc::clone(&hub), conns: Arc::clone(&conns), stats: Arc::clone(&stats), join_tx: join_tx.clone(), leave_tx: leave_tx.clone(), input_tx: input_tx.clone(), outboxes: Arc::clone(&outboxes), published: Arc::clone(&published) };
                    tokio::spawn(async move {
                        match incoming.await {
                            Ok(conn) => handle(conn, ctx).await,
                            Err(_) => {
                                ctx.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            })
        };
        let (sd, hl) = (Arc::clone(&shutdown), Arc::clone(&health));
        tokio::spawn(async move {
            wait_for_signal().await;
            // Drain: stop admitting (readyz 503, hellos refused), then stop
            // the tick loop after its current tick (it flushes the replay).
            hl.draining.store(true, Ordering::Relaxed);
            sd.store(true, Ordering::Relaxed);
        });
        while !shutdown.load(Ordering::Relaxed) && !tick_thread.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.store(true, Ordering::Relaxed);
        // Drain: tell every client why, then close.
        let all: Vec<quinn::Connection> = conns.lock().map(|c| c.values().cloned().collect()).unwrap_or_default();
        for c in &all {
            c.close(quinn::VarInt::from_u32(u32::from(bye::SHUTDOWN)), b"server shutting down");
        }
        accept.abort();
        repl.abort();
        endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
        tokio::time::timeout(drain_timeout, endpoint.wait_idle()).await.ok();
        // A scraper's keep-alive connection may hold the graceful shutdown:
        // wait a bounded time, the process exits anyway.
        let _ = tokio::task::spawn_blocking(move || admin_done.recv_timeout(Duration::from_secs(1))).await;
        #[cfg(feature = "agones")]
        for t in agones_tasks {
            t.abort();
        }
        anyhow::Ok(())
    });
    // Whatever ended the async part (drain, or an error such as a port in
    // use), the tick thread and the admin thread must stop too.
    shutdown.store(true, Ordering::Relaxed);
    let tick_result = tick_thread.join().map_err(|_| anyhow::anyhow!("tick thread panicked"))?;
    result?;
    tick_result?;
    let summary = summary(&stats, &hub, tick_rate);
    say(&summary.to_string());
    if let Some(p) = stats_json {
        std::fs::write(&p, serde_json::to_vec_pretty(&summary)?).with_context(|| format!("{}: cannot write", p.display()))?;
    }
    // The replay is flushed and closed: now Agones may delete the pod.
    #[cfg(feature = "agones")]
    if let Some(mut sdk) = agones {
        match rt.block_on(sdk.shutdown()) {
            Ok(()) => say("agones: Shutdown"),
            Err(e) => say(&format!("{e}")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a line; a closed stdout (a pipe nobody reads) is not an error
/// worth dying for.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn summary(stats: &Stats, hub: &Mutex<Hub>, tick_rate: u32) -> serde_json::Value {
    let mut ns = stats.tick_ns.lock().map(|v| v.clone()).unwrap_or_default();
    let n = ns.len();
    let (mean, p99) = mean_p99(&mut ns);
    let p50 = ns.get(n / 2).copied().unwrap_or(0) as f64;
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
        "datagrams_sent": l(&stats.datagrams_sent),
        "datagram_bytes_sent": l(&stats.datagram_bytes_sent),
        "datagram_send_errors": l(&stats.datagram_send_errors),
        "handshake_failures": l(&stats.handshake_failures),
        "oversized_frames": l(&stats.oversized_frames),
        "protocol_errors": l(&stats.protocol_errors),
        "handshakes": handshakes,
        "session_rejects": rejects,
        "clients_at_exit": clients,
        "frames_rendered": l(&stats.frames_rendered),
        "frames_failed": l(&stats.frames_failed),
        "frames_skipped": l(&stats.frames_skipped),
        "last_frame": stats.last_frame.lock().ok().and_then(|f| f.clone()).map(|(t, h)| serde_json::json!({"tick": t, "hash": h})),
    })
}

/// What the tick thread reports each tick (atomic metrics; never blocks).
struct TickObserver {
    /// How long a departed player's avatar waits for a reconnect.
    reconnect_grace_ms: u64,
    metrics: crate::admin::Metrics,
    health: Arc<crate::admin::Health>,
    outboxes: Outboxes,
    published: Published,
}

#[allow(clippy::too_many_arguments)]
fn tick_loop(
    mut world: World,
    recorder: Option<replays::Recorder>,
    join_rx: Receiver<JoinReq>,
    leave_rx: Receiver<Departed>,
    input_rx: Receiver<MicroPlan>,
    world_tx: tokio::sync::watch::Sender<WorldView>,
    stats: &Stats,
    shutdown: &AtomicBool,
    max_ticks: u64,
    mut frames: Option<(u64, FrameSink)>,
    obs: &TickObserver,
) -> anyhow::Result<()> {
    let period = Duration::from_secs_f64(1.0 / f64::from(world.config().tick_rate));
    let mut clock = MonotonicClock::new();
    let mut queue = PlanQueue::default();
    let mut admin_seq = 0u32;
    let mut orphans: Vec<Departed> = Vec::new();
    let mut parking = net::hub::Parking::default();
    let grace_ticks = obs.reconnect_grace_ms * u64::from(world.config().tick_rate) / 1000;
    let mut next = Instant::now();
    let loop_start = next;
    let _ = world_tx.send((world.tick().0, Arc::new(quantize_world(&world)), Arc::new(net::hub::avatar_states(&world))));
    stats.world_tick.store(world.tick().0, Ordering::Relaxed);
    while !shutdown.load(Ordering::Relaxed) && (max_ticks == 0 || world.tick().0 < max_ticks) {
        let t0 = Instant::now();
        let next_tick = Tick(world.tick().0 + 1);
        let mut plans = queue.take(next_tick);
        // Departures first: a reconnect's old session parks its avatar
        // before the new session claims it below.
        let mut leaving: Vec<Departed> = std::mem::take(&mut orphans);
        while let Ok(d) = leave_rx.try_recv() {
            leaving.push(d);
        }
        // What a departed client queued must not keep driving its avatar
        // (parked, or about to be removed) or its NPCs.
        let departed: Vec<sim_core::SourceId> = leaving.iter().map(|d| sim_core::SourceId(d.source)).collect();
        for &s in &departed {
            queue.drop_source(s);
        }
        plans.retain(|p| !departed.contains(&p.header().source));
        for d in &leaving {
            let parked = parking.park(&world, d, next_tick, grace_ticks, &mut admin_seq);
            if !parked.is_empty() {
                plans.extend(parked);
                continue;
            }
            for p in leave_plans(&world, d, next_tick, &mut admin_seq) {
                plans.push(p);
            }
        }
        // Parked avatars whose grace ran out are removed.
        for d in parking.expired(next_tick.0) {
            for p in leave_plans(&world, &d, next_tick, &mut admin_seq) {
                plans.push(p);
            }
        }
        let mut joins = Vec::new();
        // NPCs granted by earlier joins of this same tick are taken.
        let mut taken: Vec<u64> = Vec::new();
        while let Ok(j) = join_rx.try_recv() {
            // A player back within the grace period gets its avatar again.
            if j.claims.role == net::token::Role::Player
                && let Some(h) = parking.claim(&world, j.claims.client_id) {
                    if j.reply.send(vec![h]).is_err() {
                        orphans.push(Departed { client_id: j.claims.client_id, source: net::hub::source_of(j.claims.client_id), role: j.claims.role, controlled: vec![h] });
                    }
                    continue;
                }
            if let Some(p) = join_plan(&world, &j.claims, next_tick, &taken) {
                taken.extend(p.ops().iter().filter_map(|o| if let sim_core::Op::Grant { handle, .. } = o { Some(handle.to_bits()) } else { None }));
                plans.push(p.clone());
                joins.push((j, Some(p)));
            } else {
                joins.push((j, None));
            }
        }
        // From here on, inputs for `next_tick` are late: connection tasks
        // judge commands against this (a command arriving during the step
        // is counted late for its sender, not dropped silently).
        stats.world_tick.store(next_tick.0, Ordering::Relaxed);
        while let Ok(p) = input_rx.try_recv() {
            if departed.contains(&p.header().source) {
                continue;
            }
            let t = p.header().target_tick;
            if t == next_tick {
                plans.push(p);
            } else if t < next_tick && p.sections().any(|s| s.kind == sim_core::OpKind::Command) {
                // A player's command is never retargeted: dropped, counted,
                // and the player's clock learns from its lead.
                stats.inputs_late_dropped.fetch_add(1, Ordering::Relaxed);
            } else if t < next_tick && next_tick.0 - t.0 <= LATE_SLACK {
                let mut bytes = p.into_bytes();
                bytes[8..16].copy_from_slice(&next_tick.0.to_le_bytes());
                sim_core::microplan::reseal(&mut bytes);
                if let Ok(p) = MicroPlan::decode(bytes) {
                    plans.push(p);
                    stats.inputs_late_retargeted.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                let h = *p.header();
                let refused = if t < next_tick { Err(sim_core::Status::TickInPast) } else { queue.submit(p, world.tick()) };
                if let Err(status) = refused {
                    stats.inputs_late_dropped.fetch_add(1, Ordering::Relaxed);
                    obs.tell(h.source.0, || Frame::PlanStatus { sequence: h.sequence, tick: next_tick.0, status: status as u16 });
                }
            }
        }
        let j = world.step(&plans, &mut clock);
        obs.tell_outcomes(j);
        stats.inputs_applied.fetch_add(j.plans.iter().filter(|p| p.status == sim_core::Status::Ok && p.source.0 != 0).count() as u64, Ordering::Relaxed);
        stats.plans_rejected.fetch_add(u64::from(j.counters.plans_rejected), Ordering::Relaxed);
        for (req, plan) in joins {
            let handles = plan
                .as_ref()
                .and_then(|p| {
                    let h = p.header();
                    j.plans.iter().find(|pj| pj.source == h.source && pj.sequence == h.sequence).map(|pj| joined_handles(p, pj))
                })
                .unwrap_or_default();
            if req.reply.send(handles.clone()).is_err() && !handles.is_empty() {
                // The connection gave up waiting: undo the join next tick.
                orphans.push(Departed { client_id: req.claims.client_id, source: net::hub::source_of(req.claims.client_id), role: req.claims.role, controlled: handles });
            }
        }
        if let Some(r) = &recorder {
            r.record(&world, &plans)?;
        }
        // Recorded before the state goes out, so a plan decided on it can
        // never arrive before its publication time is known.
        obs.publish(world.tick().0);
        stats.world_tick.store(world.tick().0, Ordering::Relaxed);
        let _ = world_tx.send((world.tick().0, Arc::new(quantize_world(&world)), Arc::new(net::hub::avatar_states(&world))));
        if let Some((every, sink)) = frames.as_mut()
            && world.tick().0.is_multiple_of(*every) {
                sink(&world);
            }
        let spent = t0.elapsed();
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        let m = &obs.metrics;
        m.tick_seconds.observe(spent.as_secs_f64());
        m.ticks.inc();
        let c = &world.journal().counters;
        for a in sim_core::Archetype::ALL {
            m.entities.with_label_values(&[a.name()]).set(i64::from(c.bodies_per_archetype[a as usize]));
        }
        for p in &world.journal().plans {
            m.plans.with_label_values(&[p.status.name()]).inc();
        }
        if let Some(r) = &recorder {
            let rs = r.stats();
            m.replay_bytes.set(rs.bytes_written.load(Ordering::Relaxed) as i64);
            m.recorder_queue.set(rs.queued.load(Ordering::Relaxed) as i64);
            m.recorder_stalls.set(rs.stalls.load(Ordering::Relaxed) as i64);
        }
        obs.health.last_tick_ms.store(now_ms(), Ordering::Relaxed);
        if let Ok(mut v) = stats.tick_ns.lock()
            && v.len() < 10_000_000 {
                v.push(spent.as_nanos() as u64);
            }
        next += period;
        let now = Instant::now();
        if now > next {
            stats.overruns.fetch_add(1, Ordering::Relaxed);
            obs.metrics.tick_overruns.inc();
            if now - next > period * 5 {
                next = now;
            }
        } else {
            std::thread::sleep(next - now);
        }
    }
    stats.loop_us.store(loop_start.elapsed().as_micros() as u64, Ordering::Relaxed);
    if let Some(r) = recorder {
        r.close()?;
    }
    Ok(())
}

async fn replicate(
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

/// Raises a counter to a running total kept elsewhere.
fn raise(c: &prometheus::IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// Copies the hub's and the server's running totals into the metrics.
fn export_counters(hub: &Mutex<Hub>, stats: &Stats, m: &crate::admin::Metrics) {
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
        for s in h.sessions.values() {
            *roles.entry(s.role.name()).or_default() += 1;
            failures += i64::from(s.stats.client_hash_failures);
        }
        for (r, n) in roles {
            m.clients.with_label_values(&[r]).set(n);
        }
        m.client_hash_failures.set(failures);
    }
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    raise(&m.handshakes.with_label_values(&["tls_failed"]), l(&stats.handshake_failures));
    raise(&m.handshakes.with_label_values(&["oversized_frame"]), l(&stats.oversized_frames));
    raise(&m.handshakes.with_label_values(&["protocol_error"]), l(&stats.protocol_errors));
    raise(&m.inputs.with_label_values(&["applied"]), l(&stats.inputs_applied));
    raise(&m.inputs.with_label_values(&["late_retargeted"]), l(&stats.inputs_late_retargeted));
    raise(&m.inputs.with_label_values(&["late_dropped"]), l(&stats.inputs_late_dropped));
    raise(&m.inputs.with_label_values(&["queue_full"]), l(&stats.inputs_queue_full));
    raise(&m.frames.with_label_values(&["rendered"]), l(&stats.frames_rendered));
    raise(&m.frames.with_label_values(&["failed"]), l(&stats.frames_failed));
    raise(&m.frames.with_label_values(&["skipped"]), l(&stats.frames_skipped));
}

struct ConnCtx {
    tick_rate: u32,
    /// The character controller's parameters for players' avatars.
    character: Option<sim_core::character::CharacterParams>,
    metrics: crate::admin::Metrics,
    health: Arc<crate::admin::Health>,
    hub: Arc<Mutex<Hub>>,
    conns: Arc<Mutex<BTreeMap<u32, quinn::Connection>>>,
    stats: Arc<Stats>,
    join_tx: SyncSender<JoinReq>,
    leave_tx: SyncSender<Departed>,
    input_tx: SyncSender<MicroPlan>,
    outboxes: Outboxes,
    published: Published,
}

/// Frames the tick thread sends to sessions (plan statuses and ray results),
/// by source id, with whether the session wants every plan's status (a
/// policy) or only ray results (a player's fire). Bounded: a session that
/// does not keep up loses frames, the tick thread never waits.
type Outboxes = Arc<Mutex<BTreeMap<u32, (tokio::sync::mpsc::Sender<Frame>, bool)>>>;

/// When each recent tick's state was published (tick, now_ms), for the
/// policy plan latency metric.
type Published = Arc<Mutex<std::collections::VecDeque<(u64, u64)>>>;

impl TickObserver {
    /// Sends one frame to a policy session, building it only if that source
    /// has an outbox.
    fn tell(&self, source: u32, f: impl FnOnce() -> Frame) {
        if let Ok(o) = self.outboxes.lock()
            && let Some((tx, _)) = o.get(&source) {
                let _ = tx.try_send(f());
            }
    }

    /// Each policy plan's status, and its raycast results if it had any,
    /// to the session that sent it: one lock per tick, nothing built when
    /// no policy session is connected.
    fn tell_outcomes(&self, j: &sim_core::TickJournal) {
        let Ok(o) = self.outboxes.lock() else { return };
        if o.is_empty() {
            return;
        }
        for pj in &j.plans {
            let Some((tx, statuses)) = o.get(&pj.source.0) else { continue };
            if *statuses || pj.status != sim_core::Status::Ok {
                let _ = tx.try_send(Frame::PlanStatus { sequence: pj.sequence, tick: j.tick.0, status: pj.status as u16 });
            }
            if !pj.ray_hit.is_empty() {
                let n = pj.ray_hit.len().min(net::proto::MAX_RAYS_PER_FRAME);
                let _ = tx.try_send(Frame::PlanRays {
                    sequence: pj.sequence,
                    tick: j.tick.0,
                    hit: pj.ray_hit[..n].to_vec(),
                    handle: pj.ray_handle[..n].to_vec(),
                    distance_bits: pj.ray_distance[..n].iter().map(|d| d.to_bits()).collect(),
                });
            }
        }
    }

    fn publish(&self, tick: u64) {
        if let Ok(mut p) = self.published.lock() {
            if p.len() == 512 {
                p.pop_front();
            }
            p.push_back((tick, now_ms()));
        }
    }
}

/// Milliseconds since the state of `tick` was published, if it is recent.
fn since_published(published: &Published, tick: u64) -> Option<u64> {
    let p = published.lock().ok()?;
    let (first, _) = *p.front()?;
    let (t, at) = *p.get(usize::try_from(tick.checked_sub(first)?).ok()?)?;
    (t == tick).then(|| now_ms().saturating_sub(at))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn handle(conn: quinn::Connection, ctx: ConnCtx) {
    let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(Duration::from_secs(5), conn.accept_bi()).await else {
        ctx.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        conn.close(quinn::VarInt::from_u32(u32::from(bye::PROTOCOL)), b"no control stream");
        return;
    };
    let hello = match tokio::time::timeout(Duration::from_secs(5), read_frame(&mut recv)).await {
        Ok(Ok(Some(f))) => f,
        Ok(Err(net::driver::DriverError::Proto(net::proto::ProtoError::TooLarge(_)))) => {
            ctx.stats.oversized_frames.fetch_add(1, Ordering::Relaxed);
            refuse(&conn, &mut send, bye::PROTOCOL, "frame too large").await;
            return;
        }
        _ => {
            ctx.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            refuse(&conn, &mut send, bye::PROTOCOL, "expected Hello").await;
            return;
        }
    };
    if ctx.health.draining.load(Ordering::Relaxed) {
        refuse(&conn, &mut send, bye::SHUTDOWN, "server draining").await;
        return;
    }
    let (admitted, evicted) = match ctx.hub.lock() {
        Ok(mut h) => (h.hello(&hello, unix_now()), h.take_evicted()),
        Err(_) => return,
    };
    // A reconnect replaced a session whose connection died quietly: close
    // that connection; its avatar is parked for this one.
    for d in evicted {
        if let Some(c) = ctx.conns.lock().ok().and_then(|mut c| c.remove(&d.client_id)) {
            c.close(quinn::VarInt::from_u32(u32::from(bye::NORMAL)), b"replaced by a reconnect");
        }
        let _ = ctx.leave_tx.try_send(d);
    }
    let claims = match admitted {
        Ok(c) => c,
        Err(r) => {
            refuse(&conn, &mut send, r.bye_code(), &r.reason()).await;
            return;
        }
    };
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    let (id, role) = (claims.client_id, claims.role);
    if ctx.join_tx.try_send(JoinReq { claims: claims.clone(), reply: reply_tx }).is_err() {
        cancel_pending(&ctx, claims.client_id);
        refuse(&conn, &mut send, bye::FULL, "server busy").await;
        return;
    }
    let Ok(Ok(controlled)) = tokio::time::timeout(Duration::from_secs(5), reply_rx).await else {
        cancel_pending(&ctx, claims.client_id);
        refuse(&conn, &mut send, bye::PROTOCOL, "join failed").await;
        return;
    };
    let epoch = match ctx.hub.lock() {
        Ok(mut h) => h.join(&claims, controlled.clone(), now_ms()),
        Err(_) => return,
    };
    let leave = |ctx: &ConnCtx, id: u32| leave(ctx, id, epoch, conn.stable_id());
    let (tick_rate, source, tick) = (ctx.tick_rate, net::hub::source_of(id), ctx.stats.world_tick.load(Ordering::Relaxed));
    if let Ok(mut c) = ctx.conns.lock() {
        c.insert(id, conn.clone());
    }
    let welcome = Frame::Welcome { client_id: id, source_id: source, role, tick_rate, tick, schema_hash: sim_core::PORTS_SCHEMA_HASH, controlled };
    if write_frame(&mut send, &welcome).await.is_err() {
        leave(&ctx, id);
        return;
    }
    if role == net::token::Role::Player
        && let Some(params) = ctx.character
        && write_frame(&mut send, &Frame::Character(params)).await.is_err() {
            leave(&ctx, id);
            return;
        }
    // Frames to the client go through a bounded outbox drained by its own
    // writer task: a client that never reads its control stream loses
    // frames (and stalls only its writer), never this task or the tick.
    // Policies get every plan's status; players only refusals and the
    // results of their fire commands.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Frame>(256);
    let is_policy = role == net::token::Role::Policy;
    if role != net::token::Role::Observer
        && let Ok(mut o) = ctx.outboxes.lock() {
            o.insert(source, (out_tx.clone(), is_policy));
        }
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if write_frame(&mut send, &f).await.is_err() {
                break;
            }
        }
        send
    });
    let (reader, mut frame_rx) = net::driver::spawn_frame_reader(recv);
    loop {
        tokio::select! {
            d = conn.read_datagram() => {
                let Ok(d) = d else { break };
                ctx.metrics.datagrams_in.inc();
                ctx.metrics.bytes_in.inc_by(d.len() as u64);
                let server_tick = ctx.stats.world_tick.load(Ordering::Relaxed);
                let inputs = ctx.hub.lock().ok().and_then(|mut h| {
                    let now = now_ms();
                    h.sessions.get_mut(&id).map(|s| s.on_datagram(now, server_tick, &d))
                });
                if let Some(Ok(inputs)) = inputs {
                    for p in inputs {
                        if ctx.input_tx.try_send(p).is_err() {
                            ctx.stats.inputs_queue_full.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            f = frame_rx.recv() => {
                let Some(f) = f else { break };
                match f {
                    Ok(Some(Frame::Plan(bytes))) => {
                        // Dedupe and rate limit under the hub lock; decode
                        // and role checks outside it (a flood of big plans
                        // must not hold up replication); then the budget.
                        let fresh = ctx.hub.lock().ok().and_then(|mut h| h.sessions.get_mut(&id).map(|s| s.gate_input(now_ms(), &bytes)));
                        let r = match fresh {
                            Some(Ok(true)) => {
                                let screened = net::session::screen_input(role, source, bytes);
                                ctx.hub.lock().ok().and_then(|mut h| {
                                    h.sessions.get_mut(&id).map(|s| match screened {
                                        Ok((plan, cost)) => s.accept_input(plan, cost, ctx.stats.world_tick.load(Ordering::Relaxed)),
                                        Err(r) => Err(s.refused(r)),
                                    })
                                })
                            }
                            Some(Ok(false)) => Some(Ok(None)),
                            Some(Err(r)) => Some(Err(r)),
                            None => None,
                        };
                        // A refused plan's sender is told why (bounded: a
                        // client that does not read loses statuses).
                        if let Some(Err(net::session::Refusal { reject, sequence: Some(sequence) })) = r
                            && let Some(status) = reject.status() {
                                let _ = out_tx.try_send(Frame::PlanStatus { sequence, tick: ctx.stats.world_tick.load(Ordering::Relaxed), status: status as u16 });
                            }
                        if let Some(Ok(Some(p))) = r {
                            // The correlation id of an accepted policy plan is
                            // the tick it was decided on.
                            if is_policy
                                && let Some(ms) = since_published(&ctx.published, p.header().correlation) {
                                    ctx.metrics.policy_latency.observe(ms as f64 / 1000.0);
                                }
                            if ctx.input_tx.try_send(p).is_err() {
                                ctx.stats.inputs_queue_full.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(Some(Frame::Bye { .. })) | Ok(None) => break,
                    Ok(Some(_)) => {
                        ctx.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(net::driver::DriverError::Proto(net::proto::ProtoError::TooLarge(_))) => {
                        ctx.stats.oversized_frames.fetch_add(1, Ordering::Relaxed);
                        let _ = out_tx.try_send(Frame::Bye { code: bye::PROTOCOL, reason: "frame too large".into() });
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        conn.close(quinn::VarInt::from_u32(u32::from(bye::PROTOCOL)), b"frame too large");
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
    if let Ok(mut o) = ctx.outboxes.lock() {
        // A reconnect under the same id may have registered a new outbox.
        if o.get(&source).is_some_and(|(tx, _)| tx.same_channel(&out_tx)) {
            o.remove(&source);
        }
    }
    reader.abort();
    writer.abort();
    leave(&ctx, id);
}

/// The one clock of every session: milliseconds since the process started
/// (the replication task and the connection tasks must agree on "now").
fn now_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn cancel_pending(ctx: &ConnCtx, id: u32) {
    if let Ok(mut h) = ctx.hub.lock() {
        h.cancel_pending(id);
    }
}

/// Ends this connection's session (of `epoch`), unless a reconnect has
/// replaced it: then the new connection and session stay.
fn leave(ctx: &ConnCtx, id: u32, epoch: u64, conn_id: usize) {
    if let Ok(mut c) = ctx.conns.lock()
        && c.get(&id).is_some_and(|k| k.stable_id() == conn_id) {
            c.remove(&id);
        }
    if let Some(d) = ctx.hub.lock().ok().and_then(|mut h| h.leave_epoch(id, epoch)) {
        let _ = ctx.leave_tx.try_send(d);
    }
}

async fn refuse(conn: &quinn::Connection, send: &mut quinn::SendStream, code: u16, reason: &str) {
    let _ = write_frame(send, &Frame::Bye { code, reason: reason.to_string() }).await;
    let _ = send.finish();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.close(quinn::VarInt::from_u32(u32::from(code)), reason.as_bytes());
}
