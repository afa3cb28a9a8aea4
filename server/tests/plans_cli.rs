//! `dualplane plan inspect`, `plan script` and `simulate --plans`.

use sim_core::{MicroPlan, NoClock, PlanQueue, Scenario, World};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dualplane")).args(args).output().expect("spawn dualplane")
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim-core/ports/vectors")
}

fn hash_lines(o: &Output) -> Vec<String> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("tick=")).map(str::to_owned).collect()
}

#[test]
fn inspect_prints_valid_plans_and_exact_errors() {
    let f = vectors().join("one_of_each.plan");
    let o = run(&["plan", "inspect", f.to_str().expect("utf8"), "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["op_count"], 7);
    assert_eq!(v["sequence"], 42);
    assert_eq!(v["sections"][4]["kind"], "move_to");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(&f).expect("read");
    bytes[100] ^= 0x40;
    let bad = dir.path().join("bad.plan");
    std::fs::write(&bad, &bytes).expect("write");
    let o = run(&["plan", "inspect", bad.to_str().expect("utf8"), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], "BAD_CHECKSUM");
    assert!(v["detail"].as_str().expect("detail").contains("computed"));
    let o = run(&["plan", "inspect", bad.to_str().expect("utf8")]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("BAD_CHECKSUM"));
}

fn apply_in_process(dir: &Path, ticks: u64) -> Vec<String> {
    let mut w = World::from_scenario(&Scenario::default_arena(), None);
    let mut q = PlanQueue::default();
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for f in files {
        q.insert_unchecked(MicroPlan::decode(std::fs::read(f).expect("read")).expect("decode"));
    }
    let mut lines = Vec::new();
    for _ in 0..ticks {
        let due = q.take(w.tick().next());
        let j = w.step(&due, &mut NoClock);
        assert!(j.plans.iter().all(|p| p.status == sim_core::Status::Ok));
        if j.tick.0.is_multiple_of(50) {
            lines.push(format!("tick={} hash={:#018x}", j.tick.0, j.world_hash));
        }
    }
    lines
}

#[test]
fn scripted_plans_apply_identically_via_cli_and_in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plans = dir.path().join("plans");
    let o = run(&["plan", "script", "--ticks", "200", "--every", "5", "--out", plans.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A malformed file in the directory is reported and skipped; nothing else is lost.
    std::fs::write(plans.join("zzz-garbage.plan"), b"not a plan").expect("write");
    let args = ["simulate", "--plans", plans.to_str().expect("utf8"), "--ticks", "200", "--hash-every", "50", "--json"];
    let a = run(&args);
    let b = run(&args);
    assert_eq!(hash_lines(&a), hash_lines(&b));
    assert!(String::from_utf8_lossy(&a.stderr).contains("zzz-garbage.plan: TRUNCATED"));
    let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&a.stdout).lines().last().expect("summary")).expect("json");
    assert_eq!(summary["plans_applied"], 40);
    assert_eq!(summary["plans_rejected"], 0);
    assert_eq!(summary["invalid_plan_files"], 1);
    std::fs::remove_file(plans.join("zzz-garbage.plan")).expect("rm");
    assert_eq!(hash_lines(&a), apply_in_process(&plans, 200));
    let without = run(&["simulate", "--ticks", "200", "--hash-every", "50"]);
    assert_ne!(hash_lines(&a), hash_lines(&without), "plans must change the world");
}
