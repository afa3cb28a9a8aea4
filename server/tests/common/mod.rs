//! Helpers shared by the server's integration tests: a `dualplane serve`
//! child on loopback, and dev tokens.
#![allow(dead_code)]

use net::token::{Role, TokenSpec};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every stdout line the server printed so far.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` on the small test scenario.
pub fn start(dev: &Path, extra: &[&str]) -> Server {
    start_scenario(dev, concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scenarios/small.toml"), extra)
}

/// `serve` on `scenario` ("" for the embedded default arena).
pub fn start_scenario(dev: &Path, scenario: &str, extra: &[&str]) -> Server {
    let scenario_args: &[&str] = if scenario.is_empty() { &[] } else { &["--scenario", scenario] };
    let mut child = Command::new(bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", dev.to_str().expect("utf8")])
        .args(scenario_args)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let mut reader = BufReader::new(out);
    reader.read_line(&mut line).expect("banner");
    // Keep draining stdout so the server never writes into a closed pipe.
    let lines: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![line.clone()]));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut l = String::new();
        while reader.read_line(&mut l).is_ok_and(|n| n > 0) {
            if let Ok(mut v) = sink.lock() {
                v.push(std::mem::take(&mut l));
            }
        }
    });
    let addr = line.split(" on ").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no address in {line:?}"));
    Server { child, addr, lines }
}

/// The `dualplane` binary under test: this build's, or `DUALPLANE_BIN`
/// (to measure a release build with the same tests).
pub fn bin() -> std::path::PathBuf {
    std::env::var_os("DUALPLANE_BIN").map_or_else(|| env!("CARGO_BIN_EXE_dualplane").into(), Into::into)
}

/// A dev token (key id 0, server "dev", no match).
pub fn mint(key: &[u8], id: u32, role: Role, expires_at: u64, nonce: u64) -> String {
    net::token::mint(key, &TokenSpec::dev(id, role, expires_at, nonce))
}

pub fn unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}


impl Server {
    /// SIGTERM: the server drains, writes its stats and exits.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().expect("wait")
    }
}
