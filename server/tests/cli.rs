//! The `dualplane` binary across processes: identical hash lines from two
//! processes, snapshot in one process and restore in another, and clear
//! errors for bad scenario files.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dualplane"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawn dualplane")
}

fn hash_lines(o: &Output) -> Vec<String> {
    assert!(o.status.success(), "dualplane failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("tick=")).map(str::to_owned).collect()
}

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

#[test]
fn two_processes_print_identical_hash_lines_for_3000_ticks() {
    let args = ["simulate", "--ticks", "3000", "--hash-every", "50"];
    let a = bin().args(args).stdout(std::process::Stdio::piped()).spawn().expect("spawn a");
    let b = bin().args(args).stdout(std::process::Stdio::piped()).spawn().expect("spawn b");
    let (a, b) = (a.wait_with_output().expect("a"), b.wait_with_output().expect("b"));
    let (la, lb) = (hash_lines(&a), hash_lines(&b));
    assert_eq!(la.len(), 60);
    assert_eq!(la, lb);
    for l in &la {
        let (t, h) = l.split_once(' ').expect("two fields");
        assert!(t.starts_with("tick="));
        assert!(h.starts_with("hash=0x") && h.len() == "hash=0x".len() + 16, "{l}");
    }
}

#[test]
fn snapshot_in_one_process_restores_in_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = dir.path().join("t90.snap");
    let full = run(&["simulate", "--ticks", "240", "--hash-every", "10", "--snapshot-at", &format!("90:{}", snap.display())]);
    let full = hash_lines(&full);
    let resumed = run(&["simulate", "--from-snapshot", snap.to_str().expect("utf8"), "--ticks", "150", "--hash-every", "10"]);
    let resumed = hash_lines(&resumed);
    let tail: Vec<String> = full.into_iter().skip(9).collect();
    assert_eq!(resumed, tail);
}

#[test]
fn malformed_scenarios_name_the_file_field_and_expectation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("syntax.toml", "name = \"x\"\n[arena\n", "line 2"),
        ("type.toml", "name = \"x\"\n[arena]\nhalf_extents = [1, \"a\"]\n", "line 3"),
        ("value.toml", "name = \"x\"\n[arena]\nhalf_extents = [-1, 1]\n", "field `arena.half_extents[0]`: expected a finite number > 0, found -1"),
        ("missing.toml", "name = \"x\"\n", "missing field `arena`"),
    ];
    for (file, text, needle) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).expect("write");
        let o = run(&["simulate", "--scenario", path.to_str().expect("utf8"), "--ticks", "1"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(file), "{file}: error must name the file: {err}");
        assert!(err.contains(needle), "{file}: expected {needle:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = run(&["simulate", "--scenario", "/nonexistent/x.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.toml"));
}

#[test]
fn bench_tick_json_has_the_ratio_keys() {
    let o = run(&["bench", "tick", "--bodies", "64", "--ticks", "10", "--warmup", "2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    for key in ["tick_over_raw_physics", "hash_over_raw_xxh3", "allocs_per_tick_own_code", "raw_physics_ms_mean"] {
        assert!(v[key].as_f64().is_some_and(f64::is_finite), "{key}: {v}");
    }
}

#[test]
fn small_scenario_runs_from_a_file() {
    let o = run(&["simulate", "--scenario", repo("tests/scenarios/small.toml").to_str().expect("utf8"), "--ticks", "20", "--hash-every", "20"]);
    assert_eq!(hash_lines(&o).len(), 1);
}
