//! The parallel tick is deterministic: `simulate --threads 1` and
//! `--threads 2` print the same hash lines (the default arena for 3,000
//! ticks, the 10k-body arena for 300, or 3,000 with `DUALPLANE_FULL=1`),
//! and a replay recorded on 8 threads (the default cap) verifies on 1.
//! Only with the `parallel` feature (the server's default: `cargo test
//! --workspace` runs it against `DUALPLANE_BIN`, a release build with it).
#![cfg(feature = "parallel")]

mod common;

use std::path::Path;
use std::process::Command;

fn repo(p: &str) -> String {
    format!("{}/../{p}", env!("CARGO_MANIFEST_DIR"))
}

/// The hash lines and the summary's thread count of one `simulate` run.
fn hash_lines(threads: u32, args: &[&str]) -> (Vec<String>, u64) {
    let out = Command::new(common::bin()).args(["--threads", &threads.to_string(), "simulate"]).args(args).output().expect("run simulate");
    assert!(out.status.success(), "simulate --threads {threads} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text.lines().filter(|l| l.starts_with("tick=")).map(str::to_string).collect();
    let summary = text.lines().find(|l| l.starts_with("summary:")).expect("summary line");
    let n = summary.split_whitespace().find_map(|w| w.strip_prefix("threads=")).and_then(|v| v.parse().ok()).expect("threads= in the summary");
    (lines, n)
}

fn compare(args: &[&str], expected_lines: usize) {
    let (one, n1) = hash_lines(1, args);
    let (two, n2) = hash_lines(2, args);
    assert_eq!((n1, n2), (1, 2), "the runs did not use the thread counts asked for");
    assert_eq!(one.len(), expected_lines, "{one:?}");
    for (k, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_eq!(a, b, "1 and 2 threads diverge at hash line {k} ({args:?})");
    }
}

#[test]
fn default_arena_hashes_are_identical_on_1_and_2_threads() {
    compare(&["--ticks", "3000", "--hash-every", "100"], 30);
}

#[test]
fn ten_thousand_bodies_hash_identically_on_1_and_2_threads() {
    let ticks = if std::env::var_os("DUALPLANE_FULL").is_some() { 3000 } else { 300 };
    let scenario = repo("tests/scenarios/bodies10k.toml");
    compare(&["--scenario", &scenario, "--ticks", &ticks.to_string(), "--hash-every", "10"], ticks / 10);
}

#[test]
fn a_replay_recorded_on_8_threads_verifies_on_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rpl = dir.path().join("run.rpl");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let rec = Command::new(common::bin())
        .args(["--threads", "8", "simulate", "--ticks", "600", "--keyframe-every", "200", "--hash-every", "0", "--record", &path(&rpl)])
        .output()
        .expect("record");
    assert!(rec.status.success(), "{}", String::from_utf8_lossy(&rec.stderr));
    let ver = Command::new(common::bin()).args(["--threads", "1", "replay", "verify", &path(&rpl), "--json"]).output().expect("verify");
    let text = String::from_utf8_lossy(&ver.stdout);
    assert!(ver.status.success(), "{text} {}", String::from_utf8_lossy(&ver.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("verify --json");
    assert!(v["first_divergence"].is_null() && v["truncated"].is_null(), "{v}");
    assert_eq!(v["ticks_verified"], serde_json::json!(600), "{v}");
}
