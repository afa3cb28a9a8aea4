//! `serve`'s settings: flags, env vars and the TOML config file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every setting: flag > env var > config file > default.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file with any of the settings below (snake_case keys).
    #[arg(long, env = "DUALPLANE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// UDP address to listen on (default 127.0.0.1:4433; port 0 picks one).
    #[arg(long, env = "DUALPLANE_BIND")]
    pub(crate) bind: Option<SocketAddr>,
    /// Scenario file (default: the embedded arena).
    #[arg(long, env = "DUALPLANE_SCENARIO")]
    pub(crate) scenario: Option<PathBuf>,
    #[arg(long, env = "DUALPLANE_SEED")]
    pub(crate) seed: Option<u64>,
    /// Where the dev token key and self-signed certificate live (default
    /// $HOME/.dualplane/dev); generated when missing.
    #[arg(long, env = "DUALPLANE_DEV_DIR")]
    pub(crate) dev_dir: Option<PathBuf>,
    /// PEM certificate chain to present (leaf first; cert-manager's
    /// tls.crt). Re-read when it changes. Without it (and --tls-key) the
    /// server runs in dev mode with the self-signed dev certificate.
    #[arg(long, env = "DUALPLANE_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (tls.key).
    #[arg(long, env = "DUALPLANE_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Directory of token keys, one `<key id>.key` file each (hex); tokens
    /// signed by any of them are accepted, and the directory is re-read
    /// every 2 s (rotation without restart). Default: the dev dir's
    /// token.key as key id 0.
    #[arg(long, env = "DUALPLANE_TOKEN_KEYS")]
    pub(crate) token_keys: Option<PathBuf>,
    /// Start even though the dev dir's secret keys (token.key, key.der) are
    /// readable by others than their owner (refused by default).
    #[arg(long, env = "DUALPLANE_ALLOW_READABLE_KEYS")]
    pub(crate) allow_readable_keys: bool,
    /// This server's id: tokens must name it (default "dev"; under Agones
    /// the GameServer's name).
    #[arg(long, env = "DUALPLANE_SERVER_ID")]
    pub(crate) server_id: Option<String>,
    /// The match tokens must name (default ""; under Agones the allocation's
    /// dualplane.dev/session annotation moves the server to that match).
    #[arg(long = "match-id", env = "DUALPLANE_MATCH_ID")]
    pub(crate) match_id: Option<String>,
    #[arg(long, env = "DUALPLANE_MAX_CLIENTS")]
    pub(crate) max_clients: Option<usize>,
    #[arg(long, env = "DUALPLANE_IDLE_TIMEOUT_MS")]
    pub(crate) idle_timeout_ms: Option<u64>,
    /// A player who leaves keeps its avatar this long for a reconnect with
    /// a fresh token for the same client id (0: removed at once).
    #[arg(long, env = "DUALPLANE_RECONNECT_GRACE_MS")]
    pub(crate) reconnect_grace_ms: Option<u64>,
    #[arg(long, env = "DUALPLANE_KEEP_ALIVE_MS")]
    pub(crate) keep_alive_ms: Option<u64>,
    /// Input plans accepted per client per second.
    #[arg(long, env = "DUALPLANE_INPUTS_PER_SEC")]
    pub(crate) inputs_per_sec: Option<u32>,
    /// Datagrams accepted per client per second.
    #[arg(long, env = "DUALPLANE_DATAGRAMS_PER_SEC")]
    pub(crate) datagrams_per_sec: Option<u32>,
    /// Bytes per snapshot datagram.
    #[arg(long, env = "DUALPLANE_SNAPSHOT_BUDGET")]
    pub(crate) snapshot_budget: Option<usize>,
    /// Slowest snapshot rate a congested client is moved to: one snapshot
    /// every this many ticks (1, 2 or 3, i.e. down to 30 or 20 Hz at 60 Hz;
    /// default 1: adaptation off, every client gets every tick).
    /// Experimental: its signal is the server's ack ratio, which under
    /// heavy random loss or a blackout also falls (see net/src/rate.rs).
    #[arg(long, env = "DUALPLANE_MAX_SEND_DIVISOR", value_parser = clap::value_parser!(u64).range(1..=3))]
    pub(crate) max_send_divisor: Option<u64>,
    /// Replicate only entities within this many metres of each client's
    /// avatar (default: the scenario's `[interest]`, else everything; 0:
    /// everything, whatever the scenario says).
    #[arg(long, env = "DUALPLANE_INTEREST_RADIUS")]
    pub(crate) interest_radius: Option<f32>,
    /// Entities leave a client's view only beyond this many metres
    /// (hysteresis; default: the scenario's leave_radius when the radius
    /// is the scenario's, else 1.25 x the interest radius).
    #[arg(long, env = "DUALPLANE_INTEREST_LEAVE_RADIUS")]
    pub(crate) interest_leave_radius: Option<f32>,
    /// Record every session into this directory (one replay per run).
    #[arg(long, env = "DUALPLANE_RECORD")]
    pub(crate) record: Option<PathBuf>,
    /// A keyframe every this many ticks in the recording (default 600).
    #[arg(long, env = "DUALPLANE_KEYFRAME_EVERY")]
    pub(crate) keyframe_every: Option<u64>,
    /// One replay per run (default; under Agones a pod is one match), or
    /// per match: from the first client's join to the last one's leave.
    #[arg(long, env = "DUALPLANE_RECORD_MATCH", value_enum)]
    pub(crate) record_match: Option<super::recording::RecordMatch>,
    /// Stop after this many ticks (0 = run until SIGTERM/SIGINT).
    #[arg(long, env = "DUALPLANE_TICKS")]
    pub(crate) ticks: Option<u64>,
    /// Write run statistics as JSON here on exit.
    #[arg(long, env = "DUALPLANE_STATS_JSON")]
    pub(crate) stats_json: Option<PathBuf>,
    /// Render a verification frame every N ticks, off the tick thread
    /// (a slow renderer skips frames; it never stalls a tick).
    #[arg(long, env = "DUALPLANE_VERIFY_FRAMES_EVERY")]
    pub(crate) verify_frames_every: Option<u64>,
    /// HTTP admin address for /metrics, /healthz, /readyz (default
    /// 127.0.0.1:9464; port 0 picks one).
    #[arg(long, env = "DUALPLANE_ADMIN_BIND")]
    pub(crate) admin_bind: Option<SocketAddr>,
    /// Longest a SIGTERM/SIGINT drain may take before exiting anyway.
    #[arg(long, env = "DUALPLANE_DRAIN_TIMEOUT_MS")]
    pub(crate) drain_timeout_ms: Option<u64>,
    /// Where verification frames (PNG) and frames.jsonl are written.
    #[arg(long, env = "DUALPLANE_FRAMES_DIR")]
    pub(crate) frames_dir: Option<PathBuf>,
    /// Run under Agones: read GameServer annotations, mark Ready, ping
    /// health from the tick loop, Shutdown after drain (needs a build with
    /// `--features agones` and the SDK sidecar).
    #[arg(long)]
    pub(crate) agones: bool,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) bind: Option<SocketAddr>,
    pub(crate) scenario: Option<PathBuf>,
    pub(crate) seed: Option<u64>,
    pub(crate) dev_dir: Option<PathBuf>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) token_keys: Option<PathBuf>,
    pub(crate) server_id: Option<String>,
    pub(crate) match_id: Option<String>,
    pub(crate) max_clients: Option<usize>,
    pub(crate) idle_timeout_ms: Option<u64>,
    pub(crate) reconnect_grace_ms: Option<u64>,
    pub(crate) keep_alive_ms: Option<u64>,
    pub(crate) inputs_per_sec: Option<u32>,
    pub(crate) datagrams_per_sec: Option<u32>,
    pub(crate) snapshot_budget: Option<usize>,
    pub(crate) max_send_divisor: Option<u64>,
    pub(crate) interest_radius: Option<f32>,
    pub(crate) interest_leave_radius: Option<f32>,
    pub(crate) record: Option<PathBuf>,
    pub(crate) keyframe_every: Option<u64>,
    pub(crate) record_match: Option<super::recording::RecordMatch>,
    pub(crate) ticks: Option<u64>,
    pub(crate) stats_json: Option<PathBuf>,
    pub(crate) verify_frames_every: Option<u64>,
    pub(crate) frames_dir: Option<PathBuf>,
    pub(crate) admin_bind: Option<SocketAddr>,
    pub(crate) drain_timeout_ms: Option<u64>,
}

/// One settings layer's interest radii: (radius, leave radius).
pub(crate) type InterestLayer = (Option<f32>, Option<f32>);

/// The scenario's `[interest]` as a layer.
pub(crate) fn scenario_interest(s: Option<&sim_core::scenario::InterestDef>) -> InterestLayer {
    s.map_or((None, None), |s| (Some(s.radius), s.leave_radius))
}

/// Interest management from `layers`, highest precedence first (flags, the
/// config file, the scenario's `[interest]`): the first layer that sets a
/// radius decides it, and its leave radius is the first one set in that
/// layer or above (a lower layer's leave radius belongs to its own radius;
/// none: 1.25 x the radius). A radius of 0 turns interest off whatever
/// lower layers say.
pub(crate) fn interest_radii(layers: &[InterestLayer]) -> anyhow::Result<Option<net::interest::InterestRadii>> {
    let Some(k) = layers.iter().position(|l| l.0.is_some()) else {
        anyhow::ensure!(layers.iter().all(|l| l.1.is_none()), "--interest-leave-radius needs an interest radius (--interest-radius, the config file, or the scenario's [interest])");
        return Ok(None);
    };
    let radius = layers[k].0.unwrap_or_default();
    if radius == 0.0 {
        return Ok(None);
    }
    let leave = layers[..=k].iter().find_map(|l| l.1);
    net::interest::InterestRadii::new(radius, leave).map(Some).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::{interest_radii, scenario_interest};
    use sim_core::scenario::InterestDef;

    #[test]
    fn interest_comes_from_the_flag_then_the_file_then_the_scenario_and_zero_turns_it_off() {
        let scen = scenario_interest(Some(&InterestDef { radius: 20.0, leave_radius: Some(30.0) }));
        let none = (None, None);
        let radii = |layers: &[(Option<f32>, Option<f32>)]| interest_radii(layers).unwrap().map(|r| (r.enter_m, r.leave_m));
        assert_eq!(radii(&[none, none, none]), None);
        assert_eq!(radii(&[none, none, scen]), Some((20.0, 30.0)));
        assert_eq!(radii(&[(None, Some(40.0)), none, scen]), Some((20.0, 40.0)), "a flag's leave radius over the scenario's");
        assert_eq!(radii(&[(Some(10.0), None), none, scen]), Some((10.0, 12.5)), "the flag's radius with the default leave factor");
        assert_eq!(radii(&[none, (Some(10.0), Some(12.0)), scen]), Some((10.0, 12.0)), "the file's pair");
        assert_eq!(radii(&[(Some(30.0), None), (Some(10.0), Some(12.0)), scen]), Some((30.0, 37.5)), "a lower layer's leave radius belongs to its own radius");
        assert_eq!(radii(&[(Some(0.0), None), none, scen]), None);
        assert!(interest_radii(&[(Some(10.0), Some(5.0)), none]).unwrap_err().to_string().contains("at least the enter radius"));
        assert!(interest_radii(&[(None, Some(5.0)), none, none]).is_err());
    }
}
