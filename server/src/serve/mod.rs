//! `dualplane serve`: the dedicated server.
//!
//! Threads: the tick thread (`tick.rs`) owns the World and steps it at a
//! fixed rate on the simulation pool; it never waits on the network (it only
//! `try_recv`s joins, leaves and inputs queued by the connection tasks, and
//! leaves each tick's quantized world in the replication slot). The
//! replication thread (`replicate.rs`) encodes every client's snapshot from
//! it in parallel and sends them as datagrams. The tokio runtime runs one
//! task per connection (`conn.rs`). `run` wires them and drains on SIGTERM.


mod config;
mod conn;
mod frames;
mod observe;
mod recording;
mod replicate;
pub(crate) mod stats;
mod tick;

pub use config::ServeArgs;
pub(crate) use config::{interest_radii, scenario_interest};
use conn::{handle, ConnCtx, Outboxes, Published};
use frames::{frame_sink, FrameSink};
use stats::{export_counters, summary, Stats};
use tick::{tick_loop, ControlReq, JoinReq, TickObserver};

use anyhow::Context;
use crate::serve_trust::{spawn_key_watch, ServerTrust};
use net::driver::server_config_for;
use net::driver::TransportSettings;
use net::hub::{Departed, Hub};
use net::proto::bye;
use net::quant::QEntity;
use net::session::CoreConfig;
use net::tls::ServerIdentity;
use net::token::TokenGate;
use sim_core::MicroPlan;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the tick thread publishes after each tick: the tick, the quantized
/// world, and every avatar's exact state (for the player blocks).
pub(crate) type WorldView = (u64, Arc<Vec<QEntity>>, Arc<Vec<net::session::AvatarState>>);

/// The server id of a server (and the tokens minted for it) when none is
/// configured.
pub const DEFAULT_SERVER_ID: &str = net::token::DEV_SERVER_ID;


pub fn run(a: &ServeArgs) -> anyhow::Result<ExitCode> {
    let (cfg, file_interest) = config::Settings::resolve(a)?;
    let bind = cfg.bind;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut scenario = cfg.scenario.clone();
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut seed = cfg.seed;
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut max_clients = cfg.max_clients;
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut server_id = cfg.server_id.clone();
    #[cfg_attr(not(feature = "agones"), allow(unused_mut))]
    let mut match_id = cfg.match_id.clone();
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
        max_clients = o.max_clients.unwrap_or(max_clients);
        // Tokens are bound to this GameServer and to its allocated match.
        if !sdk.name.is_empty() {
            server_id.clone_from(&sdk.name);
        }
        match_id = o.session.clone().unwrap_or(match_id);
        Some(sdk)
    } else {
        None
    };
    let dev_dir = cfg.dev_dir.clone().unwrap_or_else(net::driver::default_dev_dir);
    let scenario_def = crate::simulate::load_scenario(scenario.as_ref())?;
    let interest = config::interest_radii(&[
        (a.interest_radius, a.interest_leave_radius),
        file_interest,
        config::scenario_interest(scenario_def.interest.as_ref()),
    ])?;
    let core = CoreConfig {
        budget: cfg.snapshot_budget,
        idle_timeout_ms: cfg.idle_timeout_ms,
        max_clients,
        inputs_per_sec: cfg.inputs_per_sec,
        datagrams_per_sec: cfg.datagrams_per_sec,
        interest,
        schema_hash: sim_core::PORTS_SCHEMA_HASH,
        reconnect_grace_ms: cfg.reconnect_grace_ms,
        max_send_divisor: match cfg.max_send_divisor {
            d @ 1..=3 => d,
            d => anyhow::bail!("max_send_divisor: expected 1, 2 or 3 (snapshots every 1-3 ticks), found {d}"),
        },
    };
    let transport = TransportSettings {
        idle_timeout: Duration::from_millis(core.idle_timeout_ms),
        keep_alive: Duration::from_millis(cfg.keep_alive_ms),
        stream_receive_window: None,
    };
    let record = cfg.record.clone();
    let keyframe_every = cfg.keyframe_every;
    let max_ticks = cfg.ticks;
    let stats_json = cfg.stats_json.clone();
    let frames_every = cfg.verify_frames_every;
    let frames_dir = cfg.frames_dir.clone();
    let admin_bind = cfg.admin_bind;
    let drain_timeout = Duration::from_millis(cfg.drain_timeout_ms);
    let metrics = crate::admin::Metrics::new();
    let health = Arc::new(crate::admin::Health::default());
    let shutdown_flag = Arc::new(AtomicBool::new(false));

    let ServerTrust { identity, ring, token_keys, tls_desc, keys_desc } = ServerTrust::load(cfg.tls_cert.clone(), cfg.tls_key.clone(), cfg.token_keys.clone(), &dev_dir, a.allow_readable_keys)?;
    metrics.tls_dev_mode.set(i64::from(matches!(identity, ServerIdentity::Dev { .. })));
    for (what, id) in [("server id", &server_id), ("match id", &match_id)] {
        if id.len() > net::token::MAX_ID {
            anyhow::bail!("{what} {id:?}: {} bytes; tokens carry at most {}", id.len(), net::token::MAX_ID);
        }
    }
    let (world, name, scenario_hash) = crate::simulate::scenario_world(&scenario_def, seed);
    let tick_rate = world.config().tick_rate;
    let character = Some(world.character_params(world.config().players.shape));
    let hub = Arc::new(Mutex::new(Hub::new(core.clone(), TokenGate::new(ring.clone(), &server_id, &match_id))));
    if let Some(d) = token_keys {
        spawn_key_watch(d, ring, Arc::clone(&hub), metrics.clone(), Arc::clone(&shutdown_flag));
    }
    let stats = Arc::new(Stats::default());
    let (frames, frames_thread) = if frames_every > 0 {
        let (sink, thread) = frame_sink(Arc::clone(&stats), frames_dir)?;
        (Some(sink), Some(thread))
    } else {
        (None, None)
    };
    let shutdown = shutdown_flag;
    let (join_tx, join_rx) = sync_channel::<JoinReq>(256);
    let (leave_tx, leave_rx) = sync_channel::<Departed>(1024);
    let (input_tx, input_rx) = sync_channel::<MicroPlan>(16_384);
    let (control_tx, control_rx) = sync_channel::<ControlReq>(256);
    let latest = Arc::new(replicate::Latest::default());
    let outboxes: Outboxes = Arc::default();
    let published: Published = Arc::default();
    let recording = match &record {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            // Named by match, server and start time; never truncating one
            // that exists (many servers may share one volume).
            let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let safe = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect::<String>();
            let stem = format!("{}-{}-{unix}", if match_id.is_empty() { "session".to_string() } else { safe(&match_id) }, safe(&server_id));
            let config = replays::RecorderConfig { keyframe_every, threads: crate::threads::threads(), ..Default::default() };
            let mode = cfg.record_match;
            let mut r = recording::Recording::new(dir.clone(), stem, name.clone(), scenario_hash, config, mode);
            if mode == recording::RecordMatch::Run {
                r.open(&world, &stats)?;
            }
            Some(r)
        }
        None => None,
    };

    let conns: Arc<Mutex<BTreeMap<u32, quinn::Connection>>> = Arc::default();
    let replication = replicate::spawn(
        replicate::Replication { latest: Arc::clone(&latest), hub: Arc::clone(&hub), conns: Arc::clone(&conns), leave_tx: leave_tx.clone(), stats: Arc::clone(&stats), metrics: metrics.clone(), shutdown: Arc::clone(&shutdown) },
        // One core is the tick's: replication gets the others (at least one).
        crate::threads::threads().saturating_sub(1).max(1),
    )?;
    let tick_thread = {
        let (stats, shutdown, latest) = (Arc::clone(&stats), Arc::clone(&shutdown), Arc::clone(&latest));
        let observe_tx = observe::spawn(Arc::clone(&stats))?;
        let obs = TickObserver { metrics: metrics.clone(), health: Arc::clone(&health), outboxes: Arc::clone(&outboxes), published: Arc::clone(&published), reconnect_grace_ms: core.reconnect_grace_ms, stats: Arc::clone(&stats), observe_tx };
        std::thread::Builder::new().name("tick".into()).spawn(move || {
            // The whole loop runs on the simulation pool: rapier's parallel
            // step then needs no hand-off per tick.
            crate::threads::install(|| tick_loop(world, recording, join_rx, leave_rx, input_rx, control_rx, &latest, &stats, &shutdown, max_ticks, frames.map(|f| (frames_every, f)), &obs))
        })?
    };

    let result = rt.block_on(async {
        let (sc, reloader) = server_config_for(&identity, transport)?;
        let (endpoint, guard) = net::guard::server_endpoint(sc, bind).with_context(|| format!("cannot listen on {bind}"))?;
        let _ = stats.guard.set(guard);
        let local = endpoint.local_addr()?;
        let nice = if crate::threads::raised() { format!("nice {}", crate::threads::TICK_NICE) } else { "not raised: needs CAP_SYS_NICE".to_string() };
        say(&format!("dualplane serving {name:?} at {tick_rate} Hz on {local} (QUIC, ALPN dualplane/1), {} simulation threads ({nice})", crate::threads::threads()));
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
        let accept = {
            let (endpoint, hub, conns, stats, metrics, health) = (endpoint.clone(), Arc::clone(&hub), Arc::clone(&conns), Arc::clone(&stats), metrics.clone(), Arc::clone(&health));
            tokio::spawn(async move {
                while let Some(incoming) = endpoint.accept().await {
                    let ctx = ConnCtx { tick_rate, character, metrics: metrics.clone(), health: Arc::clone(&health), hub: Arc::clone(&hub), conns: Arc::clone(&conns), stats: Arc::clone(&stats), join_tx: join_tx.clone(), leave_tx: leave_tx.clone(), input_tx: input_tx.clone(), control_tx: control_tx.clone(), outboxes: Arc::clone(&outboxes), published: Arc::clone(&published) };
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
        while !shutdown.load(Ordering::Relaxed) && !tick_thread.is_finished() && !replication.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.store(true, Ordering::Relaxed);
        // Drain: tell every client why, then close.
        let all: Vec<quinn::Connection> = conns.lock().map(|c| c.values().cloned().collect()).unwrap_or_default();
        for c in &all {
            c.close(quinn::VarInt::from_u32(u32::from(bye::SHUTDOWN)), b"server shutting down");
        }
        accept.abort();
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
    replication.join().map_err(|_| anyhow::anyhow!("replication thread panicked"))?;
    // The tick thread dropped the frame sink: the frames queued before it
    // are rendered and counted before the summary is written.
    if let Some(t) = frames_thread {
        frames::finish(t, Duration::from_secs(10));
    }
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


/// The one clock of every session: milliseconds since the process started
/// (the replication task and the connection tasks must agree on "now").
pub(crate) fn now_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}

