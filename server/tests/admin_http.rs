//! The admin surface: /metrics, /healthz, /readyz, and a SIGTERM drain that
//! flushes the replay and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out)
}

#[test]
fn metrics_health_readiness_and_sigterm_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualplane"))
        .args(["serve", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", dir.path().to_str().expect("utf8")])
        .args(["--scenario", concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scenarios/small.toml"), "--record", rec.to_str().expect("utf8")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut admin = String::new();
    for l in lines.by_ref() {
        let l = l.expect("line");
        if let Some(rest) = l.strip_prefix("admin http on ") {
            admin = rest.split_whitespace().next().expect("addr").to_string();
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (code, body) = get(&admin, "/metrics");
    assert_eq!(code, 200);
    for name in ["dualplane_tick_duration_seconds_bucket", "dualplane_ticks_total", "dualplane_entities{archetype=\"prop\"}", "dualplane_build_info", "dualplane_clients{role=\"player\"}"] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(get(&admin, "/healthz").0, 200);
    assert_eq!(get(&admin, "/readyz").0, 200);
    // SIGTERM: drain and exit 0 in bounded time, replay flushed and closed.
    let t0 = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    let f = std::fs::read_dir(&rec).expect("rec").next().expect("replay").expect("entry").path();
    let r = replays::Replay::open(&f).expect("replay");
    assert!(r.clean_end, "replay closed cleanly on drain: {:?}", r.stop);
    let _ = lines.count();
}

/// SIGTERM during a session with bots: every bot is told why, the server
/// exits 0 within the drain bound, and the recorded replay verifies.
#[test]
fn sigterm_with_bots_tells_every_bot_and_the_replay_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rec, dev) = (dir.path().join("rec"), dir.path().to_str().expect("utf8").to_string());
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualplane"))
        .args(["serve", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", &dev, "--drain-timeout-ms", "3000"])
        .args(["--scenario", concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scenarios/small.toml"), "--record", rec.to_str().expect("utf8")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let banner = lines.next().expect("banner").expect("line");
    let addr = banner.split(" on ").nth(1).and_then(|s| s.split_whitespace().next()).expect("address").to_string();
    std::thread::spawn(move || lines.count());
    let bots = Command::new(env!("CARGO_BIN_EXE_dualplane"))
        .args(["bot", "--server", &addr, "--count", "4", "--duration", "30", "--dev-dir", &dev, "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("bots");
    std::thread::sleep(Duration::from_secs(3));
    let t0 = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    let status = child.wait().expect("wait");
    let drained_in = t0.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(drained_in < Duration::from_secs(8), "drain took {drained_in:?}");
    let out = bots.wait_with_output().expect("bots output");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bot json");
    let all = report["bots"].as_array().expect("bots");
    assert_eq!(all.len(), 4);
    for b in all {
        assert_eq!(b["connected"], true, "{b}");
        assert!(b["snapshots_applied"].as_u64().unwrap_or(0) > 30, "{b}");
        let why = b["error"].as_str().unwrap_or("");
        assert!(why.contains("server shutting down"), "bot {} was not told why: {why:?}", b["client_id"]);
    }
    let f = std::fs::read_dir(&rec).expect("rec").next().expect("replay").expect("entry").path();
    let v = Command::new(env!("CARGO_BIN_EXE_dualplane")).args(["replay", "verify", f.to_str().expect("utf8"), "--json"]).output().expect("verify");
    assert!(v.status.success(), "replay verify failed: {}", String::from_utf8_lossy(&v.stdout));
}

/// A port in use is a clear error and a prompt exit, not a hang (the tick
/// thread is already running when the listeners are bound).
#[test]
fn a_taken_admin_port_fails_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualplane"))
        .args(["serve", "--bind", "127.0.0.1:0", "--admin-bind", &port, "--dev-dir", dir.path().to_str().expect("utf8")])
        .args(["--scenario", concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scenarios/small.toml")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success());
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "serve hung on a taken admin port");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read");
    assert!(err.contains("cannot listen on") && err.contains("admin"), "{err}");
    drop(taken);
}
