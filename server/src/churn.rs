//! `dualplane churn`: many short-lived players, for the fault lab. Each
//! connects, joins, reads snapshots for a moment and goes: some leave
//! cleanly (a QUIC close), the others vanish (their path is cut first, so
//! the server hears nothing more and must time them out).

use crate::client_args::{client_setup, parse_duration, LabClientArgs, Minter};
use net::driver::{connect_to, ClientOptions};
use net::token::Role;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    c: LabClientArgs,
    /// Connections to make in all.
    #[arg(long, default_value_t = 1000)]
    count: u32,
    /// Spread evenly over this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    over: Duration,
    /// How long each client stays after its Welcome.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    stay: Duration,
    /// Percent of clients that vanish instead of leaving cleanly (0-100).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    vanish_pct: u32,
    /// First client id (clients use id, id+1, ...).
    #[arg(long, default_value_t = 100_000)]
    first_id: u32,
}

#[derive(Debug, Default)]
struct Outcome {
    connected: bool,
    vanished: bool,
    datagrams: u64,
    error: Option<String>,
}

async fn one(server: Arc<str>, opts: Arc<ClientOptions>, minter: Arc<Minter>, id: u32, stay: Duration, vanish: bool) -> Outcome {
    let mut out = Outcome { vanished: vanish, ..Outcome::default() };
    let token = minter.mint(id, Role::Player, Duration::from_secs(60));
    // A vanishing client talks through a relay it can cut: once the relay
    // is gone nothing of this client reaches the server, not even a close.
    let relay = if vanish {
        let r = async {
            let (upstream, _) = net::driver::resolve(&server).await?;
            anyhow::Ok(crate::netsim::relay::start("127.0.0.1:0".parse()?, upstream, crate::netsim::Profile::default(), u64::from(id)).await?)
        };
        match r.await {
            Ok(r) => Some(r),
            Err(e) => {
                out.error = Some(format!("relay: {e}"));
                return out;
            }
        }
    } else {
        None
    };
    let target = relay.as_ref().map_or_else(|| server.to_string(), |r| r.local.to_string());
    let c = match connect_to(&target, &opts, Role::Player, &token).await {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    out.connected = true;
    let until = tokio::time::Instant::now() + stay;
    while let Ok(Ok(_)) = tokio::time::timeout_at(until, c.conn.read_datagram()).await {
        out.datagrams += 1;
    }
    if let Some(r) = relay {
        drop(r);
        drop(c);
    } else {
        c.conn.close(quinn::VarInt::from_u32(0), b"churn: leaving");
        c.endpoint.wait_idle().await;
    }
    out
}

pub fn churn(a: &ChurnArgs) -> anyhow::Result<ExitCode> {
    let (_, mut opts, minter) = client_setup(a.c.dev_dir.as_deref(), &a.c.trust, &a.c.mint)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // Through a relay the certificate must still name the real host.
    if opts.server_name.is_none() {
        opts.server_name = Some(rt.block_on(net::driver::resolve(&a.c.server))?.1);
    }
    let (opts, minter, server) = (Arc::new(opts), Arc::new(minter), Arc::<str>::from(a.c.server.as_str()));
    let start = Instant::now();
    let outcomes: Vec<Outcome> = rt.block_on(async {
        let t0 = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..a.count {
            let at = t0 + a.over.mul_f64(f64::from(i) / f64::from(a.count.max(1)));
            // `vanish_pct` of every 100 clients vanish, spread evenly.
            let vanish = (i * a.vanish_pct) / 100 != ((i + 1) * a.vanish_pct) / 100;
            let (s, o, m) = (Arc::clone(&server), Arc::clone(&opts), Arc::clone(&minter));
            let (id, stay) = (a.first_id + i, a.stay);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                one(s, o, m, id, stay, vanish).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| Outcome { error: Some(format!("task: {e}")), ..Outcome::default() }));
        }
        out
    });
    let connected = outcomes.iter().filter(|o| o.connected).count();
    let vanished = outcomes.iter().filter(|o| o.connected && o.vanished).count();
    let mut errors: BTreeMap<String, u32> = BTreeMap::new();
    for e in outcomes.iter().filter_map(|o| o.error.as_ref()) {
        *errors.entry(e.clone()).or_default() += 1;
    }
    let v = serde_json::json!({
        "attempted": outcomes.len(),
        "connected": connected,
        "left_cleanly": connected - vanished,
        "vanished": vanished,
        "datagrams_received": outcomes.iter().map(|o| o.datagrams).sum::<u64>(),
        "errors": errors,
        "seconds": start.elapsed().as_secs_f64(),
    });
    if a.c.json {
        println!("{v}");
    } else {
        println!("churn: {connected}/{} connected ({vanished} vanished), errors: {:?}", outcomes.len(), v["errors"]);
    }
    Ok(if connected == outcomes.len() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
