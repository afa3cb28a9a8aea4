//! `simulate --record` and `replay ...` as processes, including `kill -9`
//! of the recording process.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dualplane"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawn dualplane")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

#[test]
fn killed_recording_verifies_up_to_its_last_complete_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("killed.rpl");
    let small = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scenarios/small.toml");
    let mut child = bin()
        .args(["simulate", "--scenario", small, "--ticks", "100000000", "--hash-every", "0", "--record", s(&f), "--keyframe-every", "100", "--flush-every", "10"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let got = std::fs::read(&f).ok().and_then(|b| replays::Replay::parse(b).ok()).map_or(0, |r| r.range().1);
        if got >= 350 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "recording did not progress");
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // A crash's cut is not a clean pass: the truncated code, unless allowed.
    let o = run(&["replay", "verify", s(&f), "--json", "--jobs", "2"]);
    assert_eq!(o.status.code(), Some(4), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"], "truncated");
    let o = run(&["replay", "verify", s(&f), "--json", "--jobs", "2", "--allow-truncated"]);
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"], "verified_prefix");
    assert!(v["first_divergence"].is_null());
    assert!(v["ticks_verified"].as_u64().expect("n") >= 350);
    assert!(v["truncated"]["reason"].is_string(), "a killed recording is reported incomplete: {v}");
    let o = run(&["replay", "info", s(&f), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(info["complete"], false);
}

#[test]
fn cli_verify_diff_seek_bisect_find_planted_faults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plans = dir.path().join("plans");
    let f = dir.path().join("a.rpl");
    assert!(run(&["plan", "script", "--ticks", "240", "--every", "6", "--out", s(&plans)]).status.success());
    let o = run(&["simulate", "--ticks", "240", "--plans", s(&plans), "--record", s(&f), "--keyframe-every", "60", "--hash-every", "10"]);
    assert!(o.status.success());
    let sim_lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("tick=")).map(str::to_owned).collect();
    assert!(run(&["replay", "verify", s(&f)]).status.success());

    // seek: the snapshot continues exactly like the recording.
    let snap = dir.path().join("t120.snap");
    assert!(run(&["replay", "seek", s(&f), "--tick", "120", "--out", s(&snap)]).status.success());
    let o = run(&["simulate", "--from-snapshot", s(&snap), "--ticks", "0", "--json"]);
    let v: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().expect("json")).expect("json");
    assert_eq!(v["final_hash"].as_str().map(|h| format!("tick=120 hash={h}")), sim_lines.get(11).cloned());

    let planted = dir.path().join("p.rpl");
    assert!(run(&["replay", "plant", s(&f), "--out", s(&planted), "--keyframe-f32", "180:prop:linvel_y:9"]).status.success());
    let o = run(&["replay", "verify", s(&planted), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["first_divergence"]["tick"], 180);
    assert_eq!(v["first_divergence"]["columns"][0]["column"], "linvel_y");
    let report = dir.path().join("desync");
    let o = run(&["replay", "diff", s(&f), s(&planted), "--json", "--report", s(&report)]);
    assert_eq!(o.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(d["tick"], 180);
    assert_eq!(d["entities"][0]["column"], "linvel_y");
    for name in ["summary.json", "entities.json", "a.snap", "b.snap"] {
        assert!(report.join(name).exists(), "{name}");
    }
    let o = run(&["replay", "bisect", s(&planted), "--json", "--jobs", "2"]);
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(b["first_bad_keyframe"], 180);

    // Not a replay: a clear error, exit 2, no panic.
    let o = run(&["replay", "info", s(&snap)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a dualplane replay"));
}

/// The header's JSON with `commit` replaced by a same-length string (so no
/// offset in the file moves), resealed.
fn with_commit(bytes: &[u8], commit: &str) -> Vec<u8> {
    let r = replays::Replay::parse(bytes.to_vec()).expect("parse");
    let old_len = replays::format::encode_header(&r.header).len();
    let mut h = r.header.clone();
    assert_eq!(h.build_info.commit.len(), commit.len(), "same length keeps every offset");
    h.build_info.commit = commit.into();
    let mut out = replays::format::encode_header(&h);
    assert_eq!(out.len(), old_len);
    out.extend_from_slice(&bytes[old_len..]);
    out
}

#[test]
fn verify_exit_codes_tell_verified_divergence_corrupt_truncated_and_other_build_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.rpl");
    let small = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scenarios/small.toml");
    let o = run(&["simulate", "--scenario", small, "--ticks", "240", "--hash-every", "0", "--record", s(&f), "--keyframe-every", "60"]);
    assert!(o.status.success());
    let bytes = std::fs::read(&f).expect("read");
    let code = |name: &str, b: &[u8], extra: &[&str]| {
        let p = dir.path().join(name);
        std::fs::write(&p, b).expect("write");
        let mut args = vec!["replay", "verify", s(&p), "--json"];
        args.extend_from_slice(extra);
        let o = run(&args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&o.stdout)));
        assert_eq!(v["exit_code"].as_i64().map(|c| c as i32), o.status.code(), "{name}: --json carries the exit code");
        (o.status.code(), v["verdict"].as_str().unwrap_or_default().to_string(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    assert_eq!(code("ok.rpl", &bytes, &[]).0, Some(0));
    // A damaged chunk with chunks after it: corrupt, even when truncation is allowed.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    let (c, v, _) = code("corrupt.rpl", &bad, &["--allow-truncated"]);
    assert_eq!((c, v.as_str()), (Some(3), "corrupt"));
    // A cut tail: truncated; allowed, its prefix verifies.
    let cut = &bytes[..bytes.len() * 3 / 4];
    assert_eq!(code("cut.rpl", cut, &[]).0, Some(4));
    assert_eq!(code("cut.rpl", cut, &["--allow-truncated"]).1, "verified_prefix");
    // A bad header is corrupt too.
    let mut head = bytes.clone();
    head[30] ^= 1;
    assert_eq!(code("head.rpl", &head, &[]).0, Some(3));
    // Another commit: refused with both builds named, unless allowed.
    let this = replays::Replay::parse(bytes.clone()).expect("parse").header.build_info.commit;
    let other = with_commit(&bytes, &"0".repeat(this.len()));
    let o = run(&["replay", "verify", s(&{ let p = dir.path().join("other.rpl"); std::fs::write(&p, &other).expect("write"); p })]);
    assert_eq!(o.status.code(), Some(5));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&"0".repeat(this.len())) && out.contains(&this), "both commits named: {out}");
    let (c, v, _) = code("other.rpl", &other, &["--allow-other-build"]);
    assert_eq!((c, v.as_str()), (Some(0), "verified"));

    // A directory: every replay, a table, the most serious code (corrupt
    // outranks truncated and other build).
    let o = run(&["replay", "verify", s(dir.path()), "--json", "--jobs", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let files = v["files"].as_array().expect("files");
    assert_eq!(files.len(), 6, "a, ok, corrupt, cut, head, other: {v}");
    assert_eq!(v["verified"], 2, "a.rpl and ok.rpl: {v}");
    let o = run(&["replay", "verify", s(dir.path())]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("corrupt.rpl") && table.contains("2 of 6 replays verified (exit 3)"), "{table}");
}
