//! `dualplane render`: frames from scenarios and replays, golden checks.
#![cfg(feature = "render")]

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dualplane")).args(args).output().expect("spawn")
}

fn root(p: &str) -> String {
    format!("{}/../{p}", env!("CARGO_MANIFEST_DIR"))
}

fn have_adapter() -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(&["render", "--scenario", &root("tests/scenarios/empty.toml"), "--size", "32x32", "-o", dir.path().join("probe.png").to_str().expect("utf8")]);
    if !o.status.success() {
        eprintln!("\n!!!!! SKIPPED: no wgpu adapter: {} !!!!!\n", String::from_utf8_lossy(&o.stderr));
    }
    o.status.success()
}

#[test]
fn render_checks_goldens_and_writes_diffs_on_mismatch() {
    if !have_adapter() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("shapes.png");
    let o = run(&["render", "--scenario", &root("tests/scenarios/shapes.toml"), "--tick", "30", "--camera", "close", "--size", "256x256", "-o", out.to_str().expect("utf8"), "--check", &root("tests/golden/shapes-t30.png"), "--json"]);
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["check"]["comparison"]["passed"], true);
    assert!(v["journal"]["frame_hash"].as_str().is_some_and(|h| h.starts_with("0x")));
    // The wrong golden: exit 1, actual/expected/diff written next to the output.
    let o = run(&["render", "--scenario", &root("tests/scenarios/shapes.toml"), "--tick", "30", "--camera", "close", "--size", "256x256", "-o", out.to_str().expect("utf8"), "--check", &root("tests/golden/empty-t0.png")]);
    assert_eq!(o.status.code(), Some(1));
    for suffix in ["actual", "expected", "diff"] {
        assert!(dir.path().join(format!("empty-t0.{suffix}.png")).exists(), "{suffix}");
    }
    // Unknown camera: a clear error naming the known ones.
    let o = run(&["render", "--camera", "nope", "-o", out.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("overview"));
}

#[test]
fn render_a_replay_tick_and_desync_reports_carry_frames() {
    if !have_adapter() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rpl = dir.path().join("a.rpl");
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    assert!(run(&["simulate", "--scenario", &root("tests/scenarios/small.toml"), "--ticks", "60", "--keyframe-every", "30", "--record", &s(&rpl)]).status.success());
    let png = dir.path().join("t45.png");
    let o = run(&["render", "--replay", &s(&rpl), "--tick", "45", "--size", "128x128", "-o", &s(&png)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let planted = dir.path().join("p.rpl");
    assert!(run(&["replay", "plant", &s(&rpl), "--out", &s(&planted), "--keyframe-f32", "30:prop:pos_x:3"]).status.success());
    let report = dir.path().join("desync");
    let o = run(&["replay", "diff", &s(&rpl), &s(&planted), "--report", &s(&report)]);
    assert_eq!(o.status.code(), Some(1));
    for f in ["a.png", "b.png", "diff.png", "summary.json", "entities.json"] {
        assert!(report.join(f).exists(), "{f}");
    }
}

#[test]
fn serve_renders_verification_frames_off_the_tick_thread() {
    if !have_adapter() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let frames = dir.path().join("frames");
    let stats = dir.path().join("stats.json");
    let o = run(&[
        "serve", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", &s(dir.path()), "--scenario", &root("tests/scenarios/small.toml"),
        "--ticks", "150", "--verify-frames-every", "30", "--frames-dir", &s(&frames), "--stats-json", &s(&stats),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).expect("stats")).expect("json");
    assert_eq!(v["ticks"], 150);
    let rendered = v["frames_rendered"].as_u64().expect("n");
    let skipped = v["frames_skipped"].as_u64().expect("n");
    assert_eq!(rendered + skipped + v["frames_failed"].as_u64().expect("n"), 5, "{v}");
    assert!(rendered >= 1, "{v}");
    let log = std::fs::read_to_string(frames.join("frames.jsonl")).expect("frames.jsonl");
    assert_eq!(log.lines().count() as u64, rendered);
    assert!(frames.join("frame-00000030.png").exists() || rendered < 5);
}
