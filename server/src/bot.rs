//! `dualplane token` and `dualplane bot`: connect tokens, and N headless
//! clients in one process that walk their avatars, verify every snapshot's
//! hash and report what they saw.

use crate::client_args::{parse_duration, MintArgs, Minter, TrustArgs};
use net::driver::{connect_to, ClientOptions, DevCredentials};
use net::proto::Frame;
use net::command::Command;
use net::predict::Predictor;
use net::session::ClientSession;
use net::timeline::TickClock;
use sim_core::character::{CharacterInput, CharacterState};
use net::token::Role;
use std::path::PathBuf;
use std::sync::Arc;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[arg(long)]
    client_id: u32,
    #[arg(long, default_value = "player")]
    role: Role,
    /// Lifetime: 60s, 5m, 1h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    ttl: Duration,
    /// Directory holding token.key (the server's dev dir by default).
    #[arg(long, env = "DUALPLANE_DEV_DIR")]
    dev_dir: Option<PathBuf>,
    #[command(flatten)]
    mint: MintArgs,
}

pub fn token(a: &TokenArgs) -> anyhow::Result<ExitCode> {
    let creds = DevCredentials::load_or_create(&a.dev_dir.clone().unwrap_or_else(net::driver::default_dev_dir))?;
    println!("{}", a.mint.minter(&creds)?.mint(a.client_id, a.role, a.ttl));
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct BotArgs {
    /// host:port (a name or an IP address).
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: String,
    #[arg(long, default_value_t = 8)]
    count: u32,
    /// How long to run: 30s, 2m (a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// First client id (bots use id, id+1, ...).
    #[arg(long, default_value_t = 1000)]
    first_id: u32,
    /// Dev dir with cert.der and token.key (bots mint their own tokens).
    #[arg(long, env = "DUALPLANE_DEV_DIR")]
    dev_dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    /// Run the bots through an in-process link conditioner with this
    /// profile (as `dualplane netsim --profile`), e.g. "delay=50ms,loss=5%".
    #[arg(long)]
    link: Option<crate::netsim::Profile>,
    /// Seed of the link's impairment schedule.
    #[arg(long, default_value_t = 1)]
    link_seed: u64,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    mint: MintArgs,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct BotReport {
    client_id: u32,
    connected: bool,
    error: Option<String>,
    seconds: f64,
    snapshots_received: u64,
    snapshots_applied: u64,
    snapshots_per_s: f64,
    kbit_per_s: f64,
    hash_failures: u32,
    lost: u64,
    loss_pct: f64,
    /// QUIC's smoothed round trip at the end, and the median of it read at
    /// each snapshot applied (a standing queue shows in the median).
    rtt_ms: f64,
    rtt_ms_p50: f64,
    /// Commands sent (one per tick of the input timeline).
    inputs_sent: u64,
    /// Bytes per second of input datagrams (commands + acks).
    input_bytes_per_s: f64,
    /// Commands the server dropped for arriving after their tick, % of sent.
    inputs_late_pct: f64,
    /// The smoothed lead (ticks early) the server reported last.
    input_lead_ticks: f64,
    /// How far behind the newest snapshot others are shown (adapts to jitter).
    interp_delay_ticks: f64,
    /// Distance between the predicted and the server's avatar position for
    /// the same tick, over every player block compared.
    prediction_error_m_p50: f64,
    prediction_error_m_p99: f64,
    prediction_error_m_max: f64,
    /// Server states compared with a prediction for the same tick.
    predictions_compared: u64,
    /// Rewinds: server states that differed from the prediction.
    corrections: u64,
    corrections_per_min: f64,
    /// Longest wait between two applied snapshots (after the first).
    apply_gap_ms_max: f64,
    /// For a `--link` with blackouts: the longest time from a blackout's
    /// end to the next applied (hash-verified) snapshot; `None` when there
    /// was no blackout, or one never reconverged before the bot stopped.
    reconverge_ms: Option<f64>,
    /// Blackouts that ended while the bot ran and were followed by no
    /// applied snapshot.
    blackouts_unrecovered: u32,
}

/// When the link's blackouts end (since the link started), and when the
/// first snapshot after each was applied.
struct Recovery {
    link_start: Instant,
    ends: Vec<Duration>,
    first_after: Vec<Option<Duration>>,
}

impl Recovery {
    fn new(link_start: Instant, blackouts: &[(Duration, Duration)]) -> Recovery {
        let ends: Vec<Duration> = blackouts.iter().map(|(at, len)| *at + *len).collect();
        Recovery { link_start, first_after: vec![None; ends.len()], ends }
    }

    fn applied(&mut self, now: Instant) {
        let t = now.saturating_duration_since(self.link_start);
        for (end, first) in self.ends.iter().zip(&mut self.first_after) {
            if first.is_none() && t >= *end {
                *first = Some(t - *end);
            }
        }
    }

    /// (the slowest reconvergence in ms, blackouts that ended unrecovered by `now`).
    fn report(&self, now: Instant) -> (Option<f64>, u32) {
        let t = now.saturating_duration_since(self.link_start);
        let unrecovered = self.ends.iter().zip(&self.first_after).filter(|(end, f)| f.is_none() && t >= **end).count();
        let slowest = self.first_after.iter().flatten().max().map(|d| d.as_secs_f64() * 1000.0);
        (if unrecovered > 0 { None } else { slowest }, u32::try_from(unrecovered).unwrap_or(u32::MAX))
    }
}

fn quantile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    f64::from(sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

async fn one_bot(server: Arc<str>, opts: Arc<ClientOptions>, minter: Arc<Minter>, id: u32, duration: Duration, mut recovery: Recovery) -> BotReport {
    let mut rep = BotReport { client_id: id, ..BotReport::default() };
    let token = minter.mint(id, Role::Player, Duration::from_secs(60));
    let mut c = match connect_to(&server, &opts, Role::Player, &token).await {
        Ok(c) => c,
        Err(e) => {
            rep.error = Some(e.to_string());
            return rep;
        }
    };
    rep.connected = true;
    let Frame::Welcome { tick_rate, .. } = c.welcome.clone() else { return rep };
    // Players get the controller's parameters right after the welcome.
    let params = match tokio::time::timeout(Duration::from_secs(5), net::driver::read_frame(&mut c.recv)).await {
        Ok(Ok(Some(Frame::Character(p)))) => p,
        other => {
            rep.error = Some(format!("expected the character parameters after the welcome, got {other:?}"));
            return rep;
        }
    };
    // Keep reading the control stream (refusals, fire results) so the
    // server's writer never waits on us.
    let (reader, mut frames) = net::driver::spawn_frame_reader(c.recv);
    let drain = tokio::spawn(async move { while let Some(Ok(Some(_))) = frames.recv().await {} });
    let mut client = ClientSession::new();
    client.set_tick_rate(tick_rate);
    let mut clock = TickClock::new(tick_rate);
    let mut interp = net::timeline::InterpDelay::new(tick_rate);
    let mut predictor = Predictor::new(params);
    let mut errors: Vec<f32> = Vec::new();
    let mut rtts: Vec<f32> = Vec::new();
    let mut rng = sim_core::rng::WorldRng::from_seed(u64::from(id));
    let (mut seq, mut last_tick, mut late, mut sent_bytes) = (0u32, 0u64, 0u32, 0u64);
    let (mut last_applied, mut gap_max): (Option<Instant>, Duration) = (None, Duration::ZERO);
    let start = Instant::now();
    let ms = |t: Instant| t.duration_since(start).as_millis() as u64;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(tick_rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dir = [0.0f32; 2];
    let send = |client: &mut ClientSession, conn: &quinn::Connection, sent: &mut u64| {
        if let Some(d) = client.poll_ack() {
            *sent += d.len() as u64;
            let _ = conn.send_datagram(d.into());
        }
    };
    while start.elapsed() < duration {
        tokio::select! {
            d = c.conn.read_datagram() => {
                // The close reason (a drain says "server shutting down").
                let d = match d {
                    Ok(d) => d,
                    Err(e) => {
                        rep.error = Some(format!("connection closed: {e}"));
                        break;
                    }
                };
                let applied_before = client.stats.snapshots_applied;
                let got = client.on_datagram(&d);
                if client.stats.snapshots_applied > applied_before {
                    let now = Instant::now();
                    if let Some(prev) = last_applied {
                        gap_max = gap_max.max(now - prev);
                    }
                    last_applied = Some(now);
                    recovery.applied(now);
                }
                if let Some((tick, block)) = got {
                    let rtt = c.conn.rtt().as_secs_f64() * 1000.0;
                    rtts.push(rtt as f32);
                    interp.on_snapshot(ms(Instant::now()), tick);
                    clock.on_snapshot(ms(Instant::now()), tick, rtt);
                    clock.on_lead(block.lead);
                    late = block.commands_late;
                    if block.alive
                        && let Some(e) = predictor.on_server(tick, CharacterState { pos: block.pos, vel: block.vel }) {
                            errors.push(e);
                        }
                }
                // Once commands flow, the ack rides on the next command
                // datagram (within a tick): one datagram per tick, not two.
                if last_tick == 0 {
                    send(&mut client, &c.conn, &mut sent_bytes);
                }
            }
            _ = ticker.tick() => {
                let Some(t) = clock.command_tick(ms(Instant::now())) else { continue };
                if t <= last_tick {
                    continue; // the clock slowed down: no command this frame
                }
                // A random walk that turns back toward the middle (past half
                // the arena's half extent).
                if seq.is_multiple_of(30) {
                    dir = [rng.range_f32(-1.0, 1.0), rng.range_f32(-1.0, 1.0)];
                }
                let r = 0.5 * params.half_extents[0].min(params.half_extents[1]);
                if let Some(s) = predictor.current()
                    && s.pos[0] * s.pos[0] + s.pos[2] * s.pos[2] > r * r
                    && dir[0] * s.pos[0] + dir[1] * s.pos[2] > 0.0 {
                        dir = [-s.pos[0].signum() * 0.7, -s.pos[2].signum() * 0.7];
                    }
                // One command per tick; a clock that jumped ahead fills at most 3.
                for k in (last_tick + 1).max(t.saturating_sub(2))..=t {
                    seq += 1;
                    // What this player sees: others interpolated at the
                    // render tick (lag compensation rewinds fire to it).
                    let seen = interp.render_tick(ms(Instant::now())).map_or(0, |t| t.max(0.0) as u64);
                    let cmd = Command::new(seq, k, dir, 0.0, 0.0, 0).seen(k.saturating_sub(seen));
                    client.command(cmd);
                    predictor.command(k, CharacterInput { movement: cmd.movement(), buttons: u32::from(cmd.buttons) });
                    rep.inputs_sent += 1;
                }
                last_tick = t;
                send(&mut client, &c.conn, &mut sent_bytes);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s = &client.stats;
    rep.seconds = secs;
    rep.snapshots_received = s.snapshots_received;
    rep.snapshots_applied = s.snapshots_applied;
    rep.snapshots_per_s = s.snapshots_applied as f64 / secs;
    rep.kbit_per_s = s.bytes_received as f64 * 8.0 / 1000.0 / secs;
    rep.hash_failures = s.hash_failures;
    rep.lost = s.lost;
    rep.loss_pct = 100.0 * s.lost as f64 / (s.lost + s.snapshots_received).max(1) as f64;
    rep.rtt_ms = c.conn.rtt().as_secs_f64() * 1000.0;
    rtts.sort_by(f32::total_cmp);
    rep.rtt_ms_p50 = quantile(&rtts, 0.5);
    rep.input_bytes_per_s = sent_bytes as f64 / secs;
    rep.inputs_late_pct = 100.0 * f64::from(late) / rep.inputs_sent.max(1) as f64;
    rep.input_lead_ticks = clock.smoothed_lead();
    rep.interp_delay_ticks = interp.ticks();
    errors.sort_by(f32::total_cmp);
    rep.prediction_error_m_p50 = quantile(&errors, 0.5);
    rep.prediction_error_m_p99 = quantile(&errors, 0.99);
    rep.prediction_error_m_max = quantile(&errors, 1.0);
    rep.corrections = predictor.corrections;
    rep.predictions_compared = predictor.compared;
    rep.corrections_per_min = predictor.corrections as f64 * 60.0 / secs;
    rep.apply_gap_ms_max = gap_max.as_secs_f64() * 1000.0;
    (rep.reconverge_ms, rep.blackouts_unrecovered) = recovery.report(Instant::now());
    reader.abort();
    drain.abort();
    c.conn.close(quinn::VarInt::from_u32(0), b"bot done");
    c.endpoint.wait_idle().await;
    rep
}

pub fn bot(a: &BotArgs) -> anyhow::Result<ExitCode> {
    let (_, mut opts, minter) = crate::client_args::client_setup(a.dev_dir.as_deref(), &a.trust, &a.mint)?;
    let minter = Arc::new(minter);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (reports, link): (Vec<BotReport>, Option<serde_json::Value>) = rt.block_on(async {
        let mut tasks = Vec::new();
        // Through the link conditioner: the bots talk to the relay, which
        // impairs both directions on the way to the real server. The
        // certificate still has to name the real host.
        let relay = match &a.link {
            Some(p) => {
                let (upstream, host) = net::driver::resolve(&a.server).await?;
                opts.server_name = opts.server_name.clone().or(Some(host));
                Some(crate::netsim::relay::start("127.0.0.1:0".parse()?, upstream, p.clone(), a.link_seed).await?)
            }
            None => None,
        };
        let link_start = Instant::now();
        let blackouts = a.link.as_ref().map(|p| p.blackouts.clone()).unwrap_or_default();
        let target = relay.as_ref().map_or_else(|| a.server.clone(), |r| r.local.to_string());
        let server: Arc<str> = Arc::from(target.as_str());
        let opts = Arc::new(opts);
        for i in 0..a.count {
            tasks.push(tokio::spawn(one_bot(Arc::clone(&server), Arc::clone(&opts), Arc::clone(&minter), a.first_id + i, a.duration, Recovery::new(link_start, &blackouts))));
        }
        let mut out = Vec::new();
        for t in tasks {
            if let Ok(r) = t.await {
                out.push(r);
            }
        }
        anyhow::Ok((out, relay.map(|r| r.stats.json())))
    })?;
    let connected = reports.iter().filter(|r| r.connected).count();
    let failures: u32 = reports.iter().map(|r| r.hash_failures).sum();
    let applied: u64 = reports.iter().map(|r| r.snapshots_applied).sum();
    if a.json {
        println!("{}", serde_json::json!({"bots": reports, "connected": connected, "hash_failures": failures, "snapshots_applied": applied, "link": link}));
    } else {
        println!("{:>6} {:>9} {:>8} {:>9} {:>6} {:>7} {:>7} {:>7} {:>9} {:>6}", "client", "snap/s", "kbit/s", "applied", "hashf", "loss%", "rtt_ms", "late%", "pred_p99", "corr");
        for r in &reports {
            match &r.error {
                Some(e) if !r.connected => println!("{:>6} error: {e}", r.client_id),
                _ => println!(
                    "{:>6} {:>9.1} {:>8.1} {:>9} {:>6} {:>7.2} {:>7.2} {:>7.2} {:>8.4}m {:>6}",
                    r.client_id, r.snapshots_per_s, r.kbit_per_s, r.snapshots_applied, r.hash_failures, r.loss_pct, r.rtt_ms, r.inputs_late_pct, r.prediction_error_m_p99, r.corrections
                ),
            }
        }
        println!("{connected}/{} connected, {applied} snapshots applied, {failures} hash failures", reports.len());
        if let Some(l) = &link {
            println!("link: {l}");
        }
    }
    Ok(if connected == reports.len() && failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
