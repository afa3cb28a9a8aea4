//! `dualplane`: the thin binary. Parses the command line and calls into the
//! server crate's library (src/lib.rs); all logic worth testing lives there
//! and in sim-core, net and replays.

use server::{alloc_count, bench, bot, churn, graph_cmd, hostile, netsim, plan_cmd, ports_cmd, replay_cmd, serve, simulate, threads};
#[cfg(feature = "render")]
use server::render_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[global_allocator]
static ALLOC: alloc_count::CountingAlloc = alloc_count::CountingAlloc;

#[derive(Parser, Debug)]
#[command(name = "dualplane", version, about = "Deterministic simulation server for authoritative multiplayer")]
struct Cli {
    /// Simulation threads (physics steps split across them; hashes do not
    /// depend on the count). Default: the cores available, at most 8.
    #[arg(long, global = true, env = "DUALPLANE_THREADS", value_parser = threads::parse)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the dedicated server (QUIC) on embedded defaults.
    Serve(Box<serve::ServeArgs>),
    /// Render a verification frame (PNG), optionally checked against a golden image.
    #[cfg(feature = "render")]
    Render(render_cmd::RenderArgs),
    /// Mint a connect token signed with the server's key.
    Token(bot::TokenArgs),
    /// Headless bot clients that walk, verify snapshot hashes and report.
    Bot(bot::BotArgs),
    /// Run a scenario headless and print world hashes.
    Simulate(simulate::SimulateArgs),
    /// A UDP link conditioner between clients and a server (delay, jitter,
    /// loss, duplication, reordering, rate, blackouts; seeded).
    Netsim(netsim::NetsimArgs),
    /// Fault lab: many short-lived players (some leave cleanly, some vanish).
    Churn(churn::ChurnArgs),
    /// Fault lab: hostile clients (datagram flood, mute connections,
    /// malformed frames, clients that never read).
    Hostile(hostile::HostileArgs),
    /// Benchmarks that print numbers (no thresholds unless asked).
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Microplan files: inspect, script.
    Plan {
        #[command(subcommand)]
        what: plan_cmd::PlanCommand,
    },
    /// Behaviour graph files (FaaDG): inspect.
    Graph {
        #[command(subcommand)]
        what: graph_cmd::GraphCommand,
    },
    /// Replays: info, verify, diff, seek, bisect.
    Replay {
        #[command(subcommand)]
        what: replay_cmd::ReplayCommand,
    },
    /// The port IDL: generated Python constants and stubs.
    Ports {
        #[command(subcommand)]
        what: ports_cmd::PortsCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = threads::init(cli.threads) {
        eprintln!("dualplane: error: cannot start {} simulation threads: {e:#}", threads::count(cli.threads));
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Simulate(args) => threads::install(|| simulate::run(&args)),
        Command::Serve(args) => serve::run(&args),
        Command::Token(args) => bot::token(&args),
        #[cfg(feature = "render")]
        Command::Render(args) => render_cmd::run(&args),
        Command::Bot(args) => bot::bot(&args),
        Command::Netsim(args) => netsim::run(&args),
        Command::Churn(args) => churn::churn(&args),
        Command::Hostile(args) => hostile::hostile(&args),
        Command::Bench { what } => bench::run(&what),
        Command::Plan { what } => plan_cmd::run(&what),
        Command::Ports { what } => ports_cmd::run(&what),
        Command::Graph { what } => graph_cmd::run(&what),
        Command::Replay { what } => threads::install(|| replay_cmd::run(&what)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dualplane: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
