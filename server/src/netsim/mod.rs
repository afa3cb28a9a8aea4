//! `dualplane netsim`: a user-space link conditioner (this kernel has no
//! netem). A UDP relay between any client and a server that delays, jitters,
//! drops, duplicates, reorders, rate-limits and blacks out each direction
//! on a seeded, reproducible schedule. `dualplane bot --link` runs the same
//! relay in process.

pub mod profile;
pub mod relay;

pub use profile::Profile;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct NetsimArgs {
    /// Where clients send (port 0 picks one; printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The server the relay forwards to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Impairments per direction, e.g.
    /// "delay=50ms,jitter=10ms,loss=5%,dup=1%,reorder=2%,rate=2mbit,blackout=3s@10s".
    #[arg(long, default_value = "")]
    profile: Profile,
    /// Seed of the impairment schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this long (0 = until killed); then print the counters.
    #[arg(long, default_value = "0s", value_parser = crate::client_args::parse_duration)]
    duration: Duration,
    /// Counters as JSON on exit.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &NetsimArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let r = relay::start(a.listen, a.upstream, a.profile.clone(), a.seed).await?;
        crate::serve::say(&format!("netsim relaying {} -> {} with {:?}", r.local, a.upstream, a.profile));
        tokio::select! {
            () = relay::run_for(a.duration) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let v = r.stats.json();
        if a.json {
            crate::serve::say(&v.to_string());
        } else {
            crate::serve::say(&format!("netsim counters: {v}"));
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
