//! `dualplane hostile`: the fault lab's attackers, each holding a valid
//! token (or none): a flood of random datagrams, connections that never say
//! Hello, malformed and unexpected control frames after a valid Hello, and
//! policy clients that never read their stream. The server must count each
//! under its own reason and keep every other client on time.

use crate::client_args::{client_setup, parse_duration, LabClientArgs, Minter};
use net::driver::{connect_to, ClientOptions};
use net::proto::Frame;
use net::token::Role;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Random bytes at the server's UDP port (`--rate` datagrams per second).
    Flood,
    /// QUIC connections that complete the handshake and never send Hello.
    Mute,
    /// After a valid Hello: a frame that does not decode (half of the
    /// clients) or a well-formed frame a client may not send (the others).
    Garbage,
    /// Policy clients that ask for every tick's observation, submit plans
    /// and never read their control stream (a tiny flow-control window, so
    /// the server's writer blocks).
    NoRead,
}

/// The attacks made over QUIC connections (every one but the flood).
#[derive(Debug, Clone, Copy)]
enum OverConnection {
    Mute,
    Garbage,
    NoRead,
}

impl Attack {
    fn over_connection(self) -> Option<OverConnection> {
        match self {
            Attack::Flood => None,
            Attack::Mute => Some(OverConnection::Mute),
            Attack::Garbage => Some(OverConnection::Garbage),
            Attack::NoRead => Some(OverConnection::NoRead),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct HostileArgs {
    #[command(flatten)]
    c: LabClientArgs,
    #[arg(long, value_enum)]
    attack: Attack,
    /// Attacking connections (mute, garbage, no-read).
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// How long the attack lasts.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Datagrams per second of a flood.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// First client id of token-holding attackers.
    #[arg(long, default_value_t = 200_000)]
    first_id: u32,
}

/// What happened to one attacking connection.
#[derive(Debug, Default)]
struct Seen {
    connected: bool,
    /// The server closed the connection, with this reason.
    closed_by_server: Option<String>,
    sent: u64,
    error: Option<String>,
}

/// Waits for the server to close `conn` (up to `within`); its reason.
async fn server_close(conn: &quinn::Connection, within: Duration) -> Option<String> {
    match tokio::time::timeout(within, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => Some(String::from_utf8_lossy(&c.reason).into_owned()),
        Ok(e) => Some(e.to_string()),
        Err(_) => None,
    }
}

async fn flood(server: &str, rate: u32, duration: Duration) -> anyhow::Result<u64> {
    let (addr, _) = net::driver::resolve(server).await?;
    let sock = tokio::net::UdpSocket::bind(if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }).await?;
    let mut rng = sim_core::rng::WorldRng::from_seed(0xF100D);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let (per_ms, end) = (f64::from(rate) / 1000.0, tokio::time::Instant::now() + duration);
    let (mut sent, mut owed) = (0u64, 0.0f64);
    let mut buf = [0u8; 1400];
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        owed += per_ms;
        while owed >= 1.0 {
            owed -= 1.0;
            let len = 1 + (rng.next_u64() % buf.len() as u64) as usize;
            for b in &mut buf[..len] {
                *b = rng.next_u64() as u8;
            }
            if sock.send_to(&buf[..len], addr).await.is_ok() {
                sent += 1;
            }
        }
    }
    Ok(sent)
}

async fn mute(server: Arc<str>, opts: Arc<ClientOptions>, duration: Duration) -> Seen {
    let mut seen = Seen::default();
    let r = async {
        let (addr, host) = net::driver::resolve(&server).await?;
        anyhow::Ok(net::driver::handshake(addr, &host, &opts).await?)
    };
    match r.await {
        Ok((_ep, conn)) => {
            seen.connected = true;
            seen.closed_by_server = server_close(&conn, duration).await;
        }
        Err(e) => seen.error = Some(e.to_string()),
    }
    seen
}

async fn garbage(server: Arc<str>, opts: Arc<ClientOptions>, minter: Arc<Minter>, id: u32, malformed: bool, duration: Duration) -> Seen {
    let mut seen = Seen::default();
    let mut c = match connect_to(&server, &opts, Role::Player, &minter.mint(id, Role::Player, Duration::from_secs(60))).await {
        Ok(c) => c,
        Err(e) => {
            seen.error = Some(e.to_string());
            return seen;
        }
    };
    seen.connected = true;
    let sent = if malformed {
        // A length prefix and a body whose type byte no frame has.
        let mut raw = 12u32.to_le_bytes().to_vec();
        raw.extend_from_slice(&[0xff; 12]);
        c.send.write_all(&raw).await.is_ok()
    } else {
        let w = Frame::Welcome { client_id: id, source_id: 0, role: Role::Player, tick_rate: 60, tick: 0, schema_hash: 0, controlled: vec![] };
        net::driver::write_frame(&mut c.send, &w).await.is_ok()
    };
    seen.sent = u64::from(sent);
    if malformed {
        seen.closed_by_server = server_close(&c.conn, duration).await;
    } else {
        // An unexpected frame is counted, not fatal: leave after a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.conn.close(quinn::VarInt::from_u32(0), b"hostile: done");
    }
    seen
}

async fn no_read(server: Arc<str>, opts: Arc<ClientOptions>, minter: Arc<Minter>, id: u32, duration: Duration) -> Seen {
    let mut seen = Seen::default();
    let c = match connect_to(&server, &opts, Role::Policy, &minter.mint(id, Role::Policy, Duration::from_secs(60))).await {
        Ok(c) => c,
        Err(e) => {
            seen.error = Some(e.to_string());
            return seen;
        }
    };
    seen.connected = true;
    let Frame::Welcome { source_id, tick, tick_rate, .. } = c.welcome else { return seen };
    let (mut send, start) = (c.send, tokio::time::Instant::now());
    // Full observations of everything within 50 m, every tick, never read.
    if net::driver::write_frame(&mut send, &Frame::Observe(net::observe::ObserveRequest { every: 1, radius: net::observe::MAX_RADIUS })).await.is_err() {
        return seen;
    }
    // 200 plans a second (under the default 240/s input budget), each a
    // raycast, so every one earns a status and a result frame.
    let mut every = tokio::time::interval(Duration::from_millis(5));
    let mut seq = 0u32;
    while start.elapsed() < duration {
        every.tick().await;
        seq += 1;
        let now = tick + (start.elapsed().as_secs_f64() * f64::from(tick_rate)) as u64;
        let mut b = sim_core::PlanBuilder::new(sim_core::Tick(now + 3), sim_core::SourceId(source_id), seq);
        b.push(sim_core::Op::Raycast { origin: [0.0, 30.0, 0.0], direction: [0.0, -1.0, 0.0], max_distance: 60.0 });
        if net::driver::write_frame(&mut send, &Frame::Plan(b.build())).await.is_err() {
            break;
        }
        seen.sent += 1;
    }
    c.conn.close(quinn::VarInt::from_u32(0), b"hostile: done");
    seen
}

pub fn hostile(a: &HostileArgs) -> anyhow::Result<ExitCode> {
    let (_, mut opts, minter) = client_setup(a.c.dev_dir.as_deref(), &a.c.trust, &a.c.mint)?;
    if a.attack == Attack::NoRead {
        opts.transport.stream_receive_window = Some(512);
    }
    let (opts, minter, server) = (Arc::new(opts), Arc::new(minter), Arc::<str>::from(a.c.server.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let v = rt.block_on(async {
        let Some(attack) = a.attack.over_connection() else {
            let sent = flood(&server, a.rate, a.duration).await?;
            return anyhow::Ok(serde_json::json!({"attack": "flood", "datagrams_sent": sent}));
        };
        let mut tasks = Vec::new();
        for i in 0..a.count {
            let (s, o, m, id, d) = (Arc::clone(&server), Arc::clone(&opts), Arc::clone(&minter), a.first_id + i, a.duration);
            tasks.push(tokio::spawn(async move {
                match attack {
                    OverConnection::Mute => mute(s, o, d).await,
                    OverConnection::Garbage => garbage(s, o, m, id, i % 2 == 0, d).await,
                    OverConnection::NoRead => no_read(s, o, m, id, d).await,
                }
            }));
        }
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap_or_else(|e| Seen { error: Some(format!("task: {e}")), ..Seen::default() }));
        }
        let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
        for r in seen.iter().filter_map(|s| s.closed_by_server.as_ref().or(s.error.as_ref())) {
            *reasons.entry(r.clone()).or_default() += 1;
        }
        anyhow::Ok(serde_json::json!({
            "attack": format!("{:?}", a.attack).to_lowercase(),
            "connections": seen.len(),
            "connected": seen.iter().filter(|s| s.connected).count(),
            "closed_by_server": seen.iter().filter(|s| s.closed_by_server.is_some()).count(),
            "sent": seen.iter().map(|s| s.sent).sum::<u64>(),
            "reasons": reasons,
        }))
    })?;
    if a.c.json {
        println!("{v}");
    } else {
        println!("hostile: {v}");
    }
    Ok(ExitCode::SUCCESS)
}
