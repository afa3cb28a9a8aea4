//! `dualplane token` and `dualplane bot`: connect tokens, and N headless
//! clients in one process that walk their avatars, verify every snapshot's
//! hash and report what they saw.

use crate::client_args::{parse_duration, MintArgs, Minter, TrustArgs};
use net::driver::{connect_to, ClientOptions, DevCredentials};
use net::proto::Frame;
use net::session::ClientSession;
use net::token::Role;
use sim_core::{Handle, Op, PlanBuilder, SourceId, Tick};
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
    /// Inputs per second per bot.
    #[arg(long, default_value_t = 20.0)]
    input_hz: f64,
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

#[derive(Debug, Clone, serde::Serialize)]
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
    rtt_ms: f64,
    inputs_sent: u64,
}

async fn one_bot(server: Arc<str>, opts: Arc<ClientOptions>, minter: Arc<Minter>, id: u32, duration: Duration, input_every: Duration) -> BotReport {
    let mut rep = BotReport { client_id: id, connected: false, error: None, seconds: 0.0, snapshots_received: 0, snapshots_applied: 0, snapshots_per_s: 0.0, kbit_per_s: 0.0, hash_failures: 0, lost: 0, loss_pct: 0.0, rtt_ms: 0.0, inputs_sent: 0 };
    let token = minter.mint(id, Role::Player, Duration::from_secs(60));
    let c = match connect_to(&server, &opts, Role::Player, &token).await {
        Ok(c) => c,
        Err(e) => {
            rep.error = Some(e.to_string());
            return rep;
        }
    };
    rep.connected = true;
    let Frame::Welcome { source_id, controlled, .. } = c.welcome.clone() else { return rep };
    let avatar = controlled.first().copied();
    let mut client = ClientSession::new();
    let mut rng = sim_core::rng::WorldRng::from_seed(u64::from(id));
    let mut seq = 0u32;
    let start = Instant::now();
    let mut ticker = tokio::time::interval(input_every);
    let mut dir = [0.0f32; 3];
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
                client.on_datagram(&d);
                if let Some(ack) = client.poll_ack() {
                    let _ = c.conn.send_datagram(ack.into());
                }
            }
            _ = ticker.tick() => {
                if let (Some(a), Some((tick, _))) = (avatar, client.view()) {
                    // Random walk: change heading now and then.
                    if seq.is_multiple_of(10) {
                        dir = [rng.range_f32(-3.0, 3.0), 0.0, rng.range_f32(-3.0, 3.0)];
                    }
                    seq += 1;
                    let mut b = PlanBuilder::new(Tick(tick + 2), SourceId(source_id), seq);
                    b.push(Op::SetVelocity { handle: Handle::from_bits(a), linvel: dir, angvel: [0.0; 3] });
                    client.submit(b.build());
                    rep.inputs_sent += 1;
                    if let Some(ack) = client.poll_ack() {
                        let _ = c.conn.send_datagram(ack.into());
                    }
                }
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
    c.conn.close(quinn::VarInt::from_u32(0), b"bot done");
    c.endpoint.wait_idle().await;
    rep
}

pub fn bot(a: &BotArgs) -> anyhow::Result<ExitCode> {
    let creds = DevCredentials::load_or_create(&a.dev_dir.clone().unwrap_or_else(net::driver::default_dev_dir))?;
    let mut opts = a.trust.options(&creds.cert_der)?;
    let minter = Arc::new(a.mint.minter(&creds)?);
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
        let target = relay.as_ref().map_or_else(|| a.server.clone(), |r| r.local.to_string());
        let server: Arc<str> = Arc::from(target.as_str());
        let opts = Arc::new(opts);
        for i in 0..a.count {
            let every = Duration::from_secs_f64(1.0 / a.input_hz.max(0.1));
            tasks.push(tokio::spawn(one_bot(Arc::clone(&server), Arc::clone(&opts), Arc::clone(&minter), a.first_id + i, a.duration, every)));
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
        println!("{:>6} {:>9} {:>8} {:>9} {:>6} {:>7} {:>7}", "client", "snap/s", "kbit/s", "applied", "hashf", "loss%", "rtt_ms");
        for r in &reports {
            match &r.error {
                Some(e) if !r.connected => println!("{:>6} error: {e}", r.client_id),
                _ => println!("{:>6} {:>9.1} {:>8.1} {:>9} {:>6} {:>7.2} {:>7.2}", r.client_id, r.snapshots_per_s, r.kbit_per_s, r.snapshots_applied, r.hash_failures, r.loss_pct, r.rtt_ms),
            }
        }
        println!("{connected}/{} connected, {applied} snapshots applied, {failures} hash failures", reports.len());
        if let Some(l) = &link {
            println!("link: {l}");
        }
    }
    Ok(if connected == reports.len() && failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
