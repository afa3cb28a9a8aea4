//! `serve --record DIR --record-match clients`: two matches in one server
//! run make two uniquely named replay files, each of which verifies and
//! holds its clients' joins (their avatars' spawns).

mod common;

use std::process::Command;

#[test]
fn two_matches_in_one_run_make_two_replays_that_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let stats = dir.path().join("stats.json");
    let s = common::start(
        dir.path(),
        &["--record", rec.to_str().expect("utf8"), "--record-match", "clients", "--ticks", "720", "--stats-json", stats.to_str().expect("utf8")],
    );
    let addr = s.addr.to_string();
    // Other client ids the second time: the same ones would reconnect to
    // their parked avatars (no spawn).
    for (count, first_id) in [("2", "1000"), ("1", "2000")] {
        let o = Command::new(common::bin())
            .args(["bot", "--server", &addr, "--count", count, "--first-id", first_id, "--duration", "2", "--dev-dir", dir.path().to_str().expect("utf8"), "--json"])
            .output()
            .expect("bot");
        assert!(o.status.success(), "bots: {}", String::from_utf8_lossy(&o.stdout));
        // The last leave ends the match before the next one starts.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let mut s = s;
    assert!(s.child.wait().expect("wait").success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).expect("stats")).expect("json");
    let files: Vec<String> = v["replays"].as_array().expect("replays").iter().filter_map(|f| f.as_str().map(str::to_string)).collect();
    assert_eq!(files.len(), 2, "one replay per match: {v}");
    assert!(files[0].ends_with("-m1.rpl") && files[1].ends_with("-m2.rpl"), "{files:?}");
    for (f, clients) in files.iter().zip([2usize, 1]) {
        let r = replays::Replay::open(std::path::Path::new(f)).expect("open");
        assert!(r.clean_end, "{f}: closed when its last client left: {:?}", r.stop);
        // The joins are in the file: its first second spawns the avatars.
        let (first, last) = r.range();
        let grants: usize = (first + 1..=last.min(first + 60))
            .filter_map(|t| r.record(t))
            .flat_map(|rec| replays::decode_plans(&rec.plans))
            .map(|p| p.ops().iter().filter(|o| matches!(o, sim_core::Op::Spawn { archetype, .. } if *archetype == sim_core::Archetype::Avatar as u32)).count())
            .sum();
        assert!(grants >= clients, "{f}: {grants} avatar spawns in its first second, {clients} clients joined");
    }
    // `replay info` lists the clients: their source ids and avatars.
    for (f, clients) in files.iter().zip([2u64, 1]) {
        let o = Command::new(common::bin()).args(["replay", "info", f, "--json"]).output().expect("info");
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        let players: u64 = info["sources"].as_array().expect("sources").iter().filter(|s| s["source"] != 0).map(|s| s["avatars_spawned"].as_u64().unwrap_or(0)).sum();
        assert_eq!(players, clients, "{f}: {info}");
    }
    let o = Command::new(common::bin()).args(["replay", "verify", rec.to_str().expect("utf8"), "--json"]).output().expect("verify");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(o.status.success(), "{j}");
    assert_eq!(j["verified"], 2, "{j}");
}
