//! The real server over real QUIC on loopback: bots verify every snapshot,
//! and bad clients are rejected and counted without disturbing the others.

mod common;

use common::{mint, start, unix};
use net::driver::{connect, connect_with, DevCredentials, TransportSettings};
use net::proto::Frame;
use net::token::Role;
use std::process::Command;
use std::time::Duration;

#[test]
fn bots_verify_every_snapshot_over_quic() {
    let dev = tempfile::tempdir().expect("tempdir");
    let s = start(dev.path(), &[]);
    let o = Command::new(env!("CARGO_BIN_EXE_dualplane"))
        .args(["bot", "--server", &s.addr.to_string(), "--count", "6", "--duration", "4", "--dev-dir", dev.path().to_str().expect("utf8"), "--json"])
        .output()
        .expect("bot");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(v["connected"], 6, "{v}");
    assert_eq!(v["hash_failures"], 0, "{v}");
    for b in v["bots"].as_array().expect("bots") {
        assert!(b["snapshots_applied"].as_u64().expect("n") > 150, "{b}");
    }
}

#[test]
fn bad_clients_are_rejected_and_counted_without_disturbing_others() {
    let dev = tempfile::tempdir().expect("tempdir");
    let stats = dev.path().join("stats.json");
    let rec = dev.path().join("sessions");
    let s = start(dev.path(), &["--stats-json", stats.to_str().expect("utf8"), "--ticks", "420", "--record", rec.to_str().expect("utf8")]);
    let creds = DevCredentials::load_or_create(dev.path()).expect("creds");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        // A good client keeps playing throughout.
        let mut good = connect(s.addr, &creds.cert_der, Role::Player, &mint(&creds.key, 1, Role::Player, unix() + 60, 1)).await.expect("good client");
        let refused = |r: Result<net::driver::Connected, net::driver::DriverError>| match r {
            // The reason is `label: explanation`.
            Err(net::driver::DriverError::Refused { reason, .. }) => reason.split(':').next().unwrap_or_default().to_string(),
            Err(e) => format!("error: {e}"),
            Ok(_) => "ADMITTED".into(),
        };
        assert_eq!(refused(connect(s.addr, &creds.cert_der, Role::Player, "").await), "no_token");
        assert_eq!(refused(connect(s.addr, &creds.cert_der, Role::Player, &mint(b"not the key", 2, Role::Player, unix() + 60, 2)).await), "forged");
        assert_eq!(refused(connect(s.addr, &creds.cert_der, Role::Player, &mint(&creds.key, 3, Role::Player, unix() - 1, 3)).await), "expired");
        let t = mint(&creds.key, 4, Role::Observer, unix() + 60, 4);
        let first = connect(s.addr, &creds.cert_der, Role::Observer, &t).await.expect("observer admitted once");
        assert_eq!(refused(connect(s.addr, &creds.cert_der, Role::Observer, &t).await), "reused");
        // Wrong ALPN: the TLS handshake itself fails.
        let r = connect_with(s.addr, &creds.cert_der, b"h3", Role::Player, "x", TransportSettings::default()).await;
        assert!(matches!(r, Err(net::driver::DriverError::Connection(_) | net::driver::DriverError::Connect(_))), "{r:?}");
        // An oversized control frame closes only that connection.
        let mut big = connect(s.addr, &creds.cert_der, Role::Player, &mint(&creds.key, 5, Role::Player, unix() + 60, 5)).await.expect("admitted");
        let _ = big.send.write_all(&(64u32 << 20).to_le_bytes()).await;
        let _ = big.send.write_all(&[3u8; 1024]).await;
        // An observer's plans are not permitted.
        let mut obs = first;
        let ray = |source: u32, seq: u32| {
            let mut b = sim_core::PlanBuilder::new(sim_core::Tick(1), sim_core::SourceId(source), seq);
            b.push(sim_core::Op::Raycast { origin: [0.0; 3], direction: [0.0, 1.0, 0.0], max_distance: 1.0 });
            Frame::Plan(b.build())
        };
        for k in 0..5u32 {
            let _ = net::driver::write_frame(&mut obs.send, &ray(net::hub::source_of(4), k + 1)).await;
        }
        // A player may not send plans at all (commands only).
        for k in 0..20u32 {
            let _ = net::driver::write_frame(&mut good.send, &ray(net::hub::source_of(1), k + 1)).await;
        }
        // A policy flooding permitted plans beyond its rate is cut off at the limit.
        let mut pol = connect(s.addr, &creds.cert_der, Role::Policy, &mint(&creds.key, 6, Role::Policy, unix() + 60, 6)).await.expect("policy");
        for k in 0..600u32 {
            let _ = net::driver::write_frame(&mut pol.send, &ray(net::hub::source_of(6), k + 1)).await;
        }
        // The good client still receives snapshots after all that.
        let mut n = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut client = net::session::ClientSession::new();
        while tokio::time::Instant::now() < deadline && n < 60 {
            if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(500), good.conn.read_datagram()).await {
                client.on_datagram(&d);
                if let Some(a) = client.poll_ack() {
                    let _ = good.conn.send_datagram(a.into());
                }
                n += 1;
            }
        }
        assert!(n >= 60, "good client starved: {n}");
        assert_eq!(client.stats.hash_failures, 0);
        drop(big);
        drop(pol);
    });
    // Let the server finish its 420 ticks and write its counters.
    let mut s = s;
    let status = s.child.wait().expect("wait");
    assert!(status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).expect("stats")).expect("json");
    for k in ["no_token", "forged", "expired", "reused", "accepted"] {
        assert!(v["handshakes"][k].as_u64().unwrap_or(0) >= 1, "{k}: {v}");
    }
    assert!(v["handshake_failures"].as_u64().unwrap_or(0) >= 1, "wrong ALPN counted: {v}");
    assert!(v["oversized_frames"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert!(v["session_rejects"]["not_permitted"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert!(v["session_rejects"]["rate_limited"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert_eq!(v["ticks"], 420);
    // The session was recorded, joins and leaves included, and re-simulates exactly.
    let replay = std::fs::read_dir(&rec).expect("record dir").next().expect("one replay").expect("entry").path();
    let o = Command::new(env!("CARGO_BIN_EXE_dualplane")).args(["replay", "verify", replay.to_str().expect("utf8"), "--json"]).output().expect("verify");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["ticks_verified"], 420);
    assert!(r["truncated"].is_null(), "a clean shutdown closes the replay: {r}");
}

#[test]
fn config_file_env_and_flags_layer_and_bad_config_is_a_clear_error() {
    let dev = tempfile::tempdir().expect("tempdir");
    let cfg = dev.path().join("serve.toml");
    std::fs::write(&cfg, "bind = \"127.0.0.1:0\"\nadmin_bind = \"127.0.0.1:0\"\nticks = 30\nmax_clients = 4\n").expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_dualplane"))
        .args(["serve", "--config", cfg.to_str().expect("utf8"), "--dev-dir", dev.path().to_str().expect("utf8")])
        .env("DUALPLANE_TICKS", "45")
        .output()
        .expect("serve");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let last = String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_str(&last).expect("summary json");
    assert_eq!(v["ticks"], 45, "env beats the file");
    let o = Command::new(env!("CARGO_BIN_EXE_dualplane"))
        .args(["serve", "--config", cfg.to_str().expect("utf8"), "--dev-dir", dev.path().to_str().expect("utf8"), "--ticks", "20"])
        .env("DUALPLANE_TICKS", "45")
        .output()
        .expect("serve");
    let last = String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_str(&last).expect("summary json");
    assert_eq!(v["ticks"], 20, "the flag beats env and file");
    std::fs::write(&cfg, "bind = \"127.0.0.1:0\"\ntickz = 30\n").expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_dualplane")).args(["serve", "--config", cfg.to_str().expect("utf8")]).output().expect("serve");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("serve.toml") && err.contains("tickz"), "{err}");
}
