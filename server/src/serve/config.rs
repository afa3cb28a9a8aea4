//! `serve`'s settings: one [`Settings`] struct, layered by figment: flag >
//! env var (both through clap: [`ServeArgs`]) > the TOML config file >
//! the defaults in [`Settings::default`].

use anyhow::Context;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The command line (and env vars) of `serve`: every setting optional, so
/// that only what was given overrides the config file and the defaults.
#[derive(clap::Args, Debug, Default, Serialize)]
pub struct ServeArgs {
    /// TOML config file with any of the settings below (snake_case keys).
    #[arg(long, env = "DUALPLANE_CONFIG")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// UDP address to listen on (default 127.0.0.1:4433; port 0 picks one).
    #[arg(long, env = "DUALPLANE_BIND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bind: Option<SocketAddr>,
    /// Scenario file (default: the embedded arena).
    #[arg(long, env = "DUALPLANE_SCENARIO")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scenario: Option<PathBuf>,
    #[arg(long, env = "DUALPLANE_SEED")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seed: Option<u64>,
    /// Where the dev token key and self-signed certificate live (default
    /// $HOME/.dualplane/dev); generated when missing.
    #[arg(long, env = "DUALPLANE_DEV_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dev_dir: Option<PathBuf>,
    /// PEM certificate chain to present (leaf first; cert-manager's
    /// tls.crt). Re-read when it changes. Without it (and --tls-key) the
    /// server runs in dev mode with the self-signed dev certificate.
    #[arg(long, env = "DUALPLANE_TLS_CERT", requires = "tls_key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (tls.key).
    #[arg(long, env = "DUALPLANE_TLS_KEY", requires = "tls_cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Directory of token keys, one `<key id>.key` file each (hex); tokens
    /// signed by any of them are accepted, and the directory is re-read
    /// every 2 s (rotation without restart). Default: the dev dir's
    /// token.key as key id 0.
    #[arg(long, env = "DUALPLANE_TOKEN_KEYS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_keys: Option<PathBuf>,
    /// Start even though the dev dir's secret keys (token.key, key.der) are
    /// readable by others than their owner (refused by default).
    #[arg(long, env = "DUALPLANE_ALLOW_READABLE_KEYS")]
    #[serde(skip)]
    pub(crate) allow_readable_keys: bool,
    /// This server's id: tokens must name it (default "dev"; under Agones
    /// the GameServer's name).
    #[arg(long, env = "DUALPLANE_SERVER_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_id: Option<String>,
    /// The match tokens must name (default ""; under Agones the allocation's
    /// dualplane.dev/session annotation moves the server to that match).
    #[arg(long = "match-id", env = "DUALPLANE_MATCH_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) match_id: Option<String>,
    #[arg(long, env = "DUALPLANE_MAX_CLIENTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_clients: Option<usize>,
    #[arg(long, env = "DUALPLANE_IDLE_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idle_timeout_ms: Option<u64>,
    /// A player who leaves keeps its avatar this long for a reconnect with
    /// a fresh token for the same client id (0: removed at once).
    #[arg(long, env = "DUALPLANE_RECONNECT_GRACE_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reconnect_grace_ms: Option<u64>,
    #[arg(long, env = "DUALPLANE_KEEP_ALIVE_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keep_alive_ms: Option<u64>,
    /// Input plans accepted per client per second.
    #[arg(long, env = "DUALPLANE_INPUTS_PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) inputs_per_sec: Option<u32>,
    /// Datagrams accepted per client per second.
    #[arg(long, env = "DUALPLANE_DATAGRAMS_PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) datagrams_per_sec: Option<u32>,
    /// Bytes per snapshot datagram.
    #[arg(long, env = "DUALPLANE_SNAPSHOT_BUDGET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) snapshot_budget: Option<usize>,
    /// Slowest snapshot rate a congested client is moved to: one snapshot
    /// every this many ticks (1, 2 or 3, i.e. down to 30 or 20 Hz at 60 Hz;
    /// default 3; 1: adaptation off, every client gets every tick). The
    /// signal is each client's own count of snapshots received against
    /// those sent (see net/src/rate.rs).
    #[arg(long, env = "DUALPLANE_MAX_SEND_DIVISOR", value_parser = clap::value_parser!(u64).range(1..=3))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_send_divisor: Option<u64>,
    /// Replicate only entities within this many metres of each client's
    /// avatar (default: the scenario's `[interest]`, else everything; 0:
    /// everything, whatever the scenario says).
    #[arg(long, env = "DUALPLANE_INTEREST_RADIUS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) interest_radius: Option<f32>,
    /// Entities leave a client's view only beyond this many metres
    /// (hysteresis; default: the scenario's leave_radius when the radius
    /// is the scenario's, else 1.25 x the interest radius).
    #[arg(long, env = "DUALPLANE_INTEREST_LEAVE_RADIUS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) interest_leave_radius: Option<f32>,
    /// Record every session into this directory (one replay per run).
    #[arg(long, env = "DUALPLANE_RECORD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) record: Option<PathBuf>,
    /// A keyframe every this many ticks in the recording (default 600).
    #[arg(long, env = "DUALPLANE_KEYFRAME_EVERY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keyframe_every: Option<u64>,
    /// One replay per run (default; under Agones a pod is one match), or
    /// per match: from the first client's join to the last one's leave.
    #[arg(long, env = "DUALPLANE_RECORD_MATCH", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) record_match: Option<super::recording::RecordMatch>,
    /// Stop after this many ticks (0 = run until SIGTERM/SIGINT).
    #[arg(long, env = "DUALPLANE_TICKS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ticks: Option<u64>,
    /// Write run statistics as JSON here on exit.
    #[arg(long, env = "DUALPLANE_STATS_JSON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stats_json: Option<PathBuf>,
    /// Render a verification frame every N ticks, off the tick thread
    /// (a slow renderer skips frames; it never stalls a tick).
    #[arg(long, env = "DUALPLANE_VERIFY_FRAMES_EVERY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) verify_frames_every: Option<u64>,
    /// HTTP admin address for /metrics, /healthz, /readyz (default
    /// 127.0.0.1:9464; port 0 picks one).
    #[arg(long, env = "DUALPLANE_ADMIN_BIND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) admin_bind: Option<SocketAddr>,
    /// Longest a SIGTERM/SIGINT drain may take before exiting anyway.
    #[arg(long, env = "DUALPLANE_DRAIN_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drain_timeout_ms: Option<u64>,
    /// Where verification frames (PNG) and frames.jsonl are written.
    #[arg(long, env = "DUALPLANE_FRAMES_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frames_dir: Option<PathBuf>,
    /// Run under Agones: read GameServer annotations, mark Ready, ping
    /// health from the tick loop, Shutdown after drain (needs a build with
    /// `--features agones` and the SDK sidecar).
    #[arg(long)]
    #[serde(skip)]
    pub(crate) agones: bool,
}

/// Every `serve` setting, resolved. Keys of the config file are these
/// field names; an unknown key or a value of the wrong type is an error
/// naming the key and the file.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Settings {
    pub(crate) bind: SocketAddr,
    pub(crate) scenario: Option<PathBuf>,
    pub(crate) seed: Option<u64>,
    /// Default: `net::driver::default_dev_dir()`.
    pub(crate) dev_dir: Option<PathBuf>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) token_keys: Option<PathBuf>,
    pub(crate) server_id: String,
    pub(crate) match_id: String,
    pub(crate) max_clients: usize,
    pub(crate) idle_timeout_ms: u64,
    pub(crate) reconnect_grace_ms: u64,
    pub(crate) keep_alive_ms: u64,
    pub(crate) inputs_per_sec: u32,
    pub(crate) datagrams_per_sec: u32,
    pub(crate) snapshot_budget: usize,
    pub(crate) max_send_divisor: u64,
    pub(crate) interest_radius: Option<f32>,
    pub(crate) interest_leave_radius: Option<f32>,
    pub(crate) record: Option<PathBuf>,
    pub(crate) keyframe_every: u64,
    pub(crate) record_match: super::recording::RecordMatch,
    pub(crate) ticks: u64,
    pub(crate) stats_json: Option<PathBuf>,
    pub(crate) verify_frames_every: u64,
    pub(crate) frames_dir: Option<PathBuf>,
    pub(crate) admin_bind: SocketAddr,
    pub(crate) drain_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 4433)),
            scenario: None,
            seed: None,
            dev_dir: None,
            tls_cert: None,
            tls_key: None,
            token_keys: None,
            server_id: super::DEFAULT_SERVER_ID.to_string(),
            match_id: String::new(),
            max_clients: 256,
            idle_timeout_ms: 10_000,
            reconnect_grace_ms: 10_000,
            keep_alive_ms: 2000,
            inputs_per_sec: 240,
            datagrams_per_sec: 600,
            snapshot_budget: 1100,
            max_send_divisor: 3,
            interest_radius: None,
            interest_leave_radius: None,
            record: None,
            keyframe_every: 600,
            record_match: super::recording::RecordMatch::Run,
            ticks: 0,
            stats_json: None,
            verify_frames_every: 0,
            frames_dir: None,
            admin_bind: SocketAddr::from(([127, 0, 0, 1], 9464)),
            drain_timeout_ms: 5000,
        }
    }
}

/// The interest radii a config file sets (its own layer: see
/// [`interest_radii`]).
#[derive(Deserialize, Default)]
struct FileInterest {
    interest_radius: Option<f32>,
    interest_leave_radius: Option<f32>,
}

impl Settings {
    /// Layers the defaults, the config file (if any) and the command line
    /// (flags and env vars), later over earlier. Also returns the file's
    /// own interest radii, which layer with the scenario's separately.
    pub(crate) fn resolve(a: &ServeArgs) -> anyhow::Result<(Settings, InterestLayer)> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        let mut file = InterestLayer::default();
        if let Some(p) = &a.config {
            // A clear error for a missing or unreadable file first (figment's
            // names neither the cause nor the flag).
            std::fs::read(p).with_context(|| format!("{}: cannot read the config file (--config)", p.display()))?;
            let fi: FileInterest = Figment::from(Toml::file_exact(p)).extract().unwrap_or_default();
            file = (fi.interest_radius, fi.interest_leave_radius);
            fig = fig.merge(Toml::file_exact(p));
        }
        // figment's errors name the key, the file and, for an unknown key,
        // every valid one.
        let s: Settings = fig.merge(Serialized::defaults(a)).extract().map_err(|e| anyhow::anyhow!("invalid setting: {e}"))?;
        Ok((s, file))
    }
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
    use super::{interest_radii, scenario_interest, ServeArgs, Settings};
    use sim_core::scenario::InterestDef;

    #[test]
    fn settings_layer_defaults_then_the_file_then_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("serve.toml");
        std::fs::write(&cfg, "ticks = 30\nmax_clients = 4\ninterest_radius = 20\nrecord_match = \"clients\"\n").unwrap();
        let args = ServeArgs { config: Some(cfg.clone()), ticks: Some(20), interest_leave_radius: Some(40.0), ..ServeArgs::default() };
        let (s, file) = Settings::resolve(&args).unwrap();
        assert_eq!(s.ticks, 20, "a flag (or env var) beats the file");
        assert_eq!(s.max_clients, 4, "the file beats the default");
        assert_eq!(s.snapshot_budget, 1100, "the default where nothing sets it");
        assert_eq!(s.record_match, super::super::recording::RecordMatch::Clients);
        assert_eq!(file, (Some(20.0), None), "the file's own interest layer, apart from the flags'");
        let (d, _) = Settings::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(d.bind.port(), 4433);
        std::fs::write(&cfg, "max_clients = -3\n").unwrap();
        let e = Settings::resolve(&args).unwrap_err().to_string();
        assert!(e.contains("max_clients") && e.contains("serve.toml"), "{e}");
        std::fs::write(&cfg, "max_clientz = 3\n").unwrap();
        let e = Settings::resolve(&args).unwrap_err().to_string();
        assert!(e.contains("max_clientz") && e.contains("max_clients"), "names the key and the valid ones: {e}");
    }

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
