//! The dualplane server crate's library: every command's logic (serve,
//! bot, simulate, bench, replay, netsim, ...), so that tests and benches
//! can drive it without a process. The `dualplane` binary (main.rs) only
//! parses the command line and calls in here.

pub mod admin;
#[cfg(feature = "agones")]
pub mod agones;
#[cfg_attr(not(feature = "agones"), allow(dead_code))]
pub mod agones_meta;
pub mod alloc_count;
pub mod bench;
pub mod bench_handshake;
pub mod bench_record;
pub mod bench_reverts;
pub mod bench_serve;
pub mod bot;
pub mod churn;
pub mod client_args;
pub mod clock;
pub mod graph_cmd;
pub mod hostile;
pub mod netsim;
pub mod plan_cmd;
pub mod ports_cmd;
#[cfg(feature = "render")]
pub mod render_cmd;
pub mod replay_cmd;
pub mod replay_verify;
pub mod serve;
pub mod serve_trust;
pub mod simulate;
pub mod threads;

