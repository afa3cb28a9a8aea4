//! `dualplane replay verify FILE|DIR`: one replay's verdict, or every
//! replay's in a directory with a summary table; exit codes as documented
//! on the command (see `replays::verdict`).

use replays::{Replay, Verdict, VerifyOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// One file's result: its exit code, its JSON report, its text lines.
struct Outcome {
    code: u8,
    verdict: String,
    ticks: u64,
    seconds: f64,
    json: serde_json::Value,
    text: Vec<String>,
}

/// Verifies one file. Errors about its bytes become verdicts; other errors
/// (IO) are returned.
fn verify_file(file: &Path, opts: VerifyOptions, progress: bool) -> anyhow::Result<Outcome> {
    let name = file.display().to_string();
    let refuse = |e: replays::ReplayError| -> anyhow::Result<Outcome> {
        let Some(v) = Verdict::of_error(&e) else { return Err(anyhow::Error::new(e).context(name.clone())) };
        Ok(Outcome {
            code: v.exit_code(),
            verdict: serde_json::to_value(v)?.as_str().unwrap_or_default().to_string(),
            ticks: 0,
            seconds: 0.0,
            json: serde_json::json!({ "file": name, "verdict": v, "exit_code": v.exit_code(), "error": e.to_string() }),
            text: vec![format!("{name}: {e}"), format!("verdict: {v:?} (exit {})", v.exit_code())],
        })
    };
    let r = match Replay::open(file) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    let mut text = Vec::new();
    let (first, last) = r.range();
    let total = opts.to.unwrap_or(last).min(last).saturating_sub(opts.from.unwrap_or(first).max(first));
    let pb = progress.then(|| {
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(indicatif::ProgressStyle::with_template("verify {bar:40} {pos}/{len} ticks {per_sec} eta {eta}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
        pb
    });
    let t0 = std::time::Instant::now();
    let report = replays::verify(&r, opts, &|n| {
        if let Some(pb) = &pb {
            pb.inc(n);
        }
    });
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let report = match report {
        Ok(report) => report,
        Err(e) => return refuse(e),
    };
    let secs = t0.elapsed().as_secs_f64();
    if let Some(o) = &report.other_build {
        let what = if report.verdict == Verdict::OtherBuild { "REFUSED (--allow-other-build to verify anyway)" } else { "verified anyway (--allow-other-build)" };
        text.push(format!("other build: {o}: {what}"));
    }
    match &report.first_divergence {
        None if report.verdict != Verdict::OtherBuild => text.push(format!("verified ticks {}..={} ({} ticks, {} segments) in {secs:.2}s: no divergence", report.from, report.to, report.ticks_verified, report.segments)),
        None => {}
        Some(d) => {
            text.push(format!("DIVERGENCE at tick {} ({:?}): world hash {} recorded, {} re-simulated", d.tick, d.kind, d.expected_world_hash, d.actual_world_hash));
            for c in &d.columns {
                text.push(format!("  column {}/{}: recorded {}, re-simulated {}", c.archetype, c.column, c.expected, c.actual));
            }
        }
    }
    if let Some(s) = &report.truncated {
        let verdict = match report.verdict {
            Verdict::VerifiedPrefix => "its prefix verified (--allow-truncated)",
            Verdict::Truncated => "TRUNCATED (--allow-truncated accepts a verified prefix)",
            Verdict::Corrupt => "CORRUPT",
            _ => "",
        };
        text.push(format!("the file is incomplete ({:?}): verified up to its last good chunk (stopped at byte {}: {}): {verdict}", s.kind, s.offset, s.reason));
    }
    text.push(format!("verdict: {:?} (exit {})", report.verdict, report.exit_code));
    let mut json = serde_json::to_value(&report)?;
    json["file"] = serde_json::json!(name);
    json["seconds"] = serde_json::json!(secs);
    json["ticks_per_s"] = serde_json::json!(report.ticks_verified as f64 / secs.max(1e-9));
    Ok(Outcome { code: report.exit_code, verdict: json["verdict"].as_str().unwrap_or_default().to_string(), ticks: report.ticks_verified, seconds: secs, json, text })
}

/// How serious an exit code is, for a directory's overall code: a
/// divergence first, then damage, errors, another build, a cut tail.
fn severity(code: u8) -> u8 {
    use replays::verdict::{EXIT_CORRUPT, EXIT_DIVERGENCE, EXIT_ERROR, EXIT_OTHER_BUILD, EXIT_TRUNCATED};
    match code {
        EXIT_DIVERGENCE => 5,
        EXIT_CORRUPT => 4,
        EXIT_ERROR => 3,
        EXIT_OTHER_BUILD => 2,
        EXIT_TRUNCATED => 1,
        _ => 0,
    }
}

pub fn run(path: &Path, opts: VerifyOptions, json: bool) -> anyhow::Result<ExitCode> {
    if !path.is_dir() {
        let o = verify_file(path, opts, std::io::stderr().is_terminal() && !json)?;
        if json {
            println!("{}", o.json);
        } else {
            for l in &o.text {
                println!("{l}");
            }
        }
        return Ok(ExitCode::from(o.code));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot list: {e}", path.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rpl"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: expected *.rpl replays in this directory, found none", path.display());
    let pb = (std::io::stderr().is_terminal() && !json).then(|| indicatif::ProgressBar::new(files.len() as u64));
    let mut rows = Vec::new();
    for f in &files {
        let o = verify_file(f, opts, false).unwrap_or_else(|e| Outcome {
            code: replays::verdict::EXIT_ERROR,
            verdict: "error".into(),
            ticks: 0,
            seconds: 0.0,
            json: serde_json::json!({ "file": f.display().to_string(), "verdict": "error", "exit_code": replays::verdict::EXIT_ERROR, "error": format!("{e:#}") }),
            text: vec![format!("{e:#}")],
        });
        if let Some(pb) = &pb {
            pb.inc(1);
        }
        rows.push((f, o));
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let code = rows.iter().map(|(_, o)| o.code).max_by_key(|&c| severity(c)).unwrap_or(0);
    let ok = rows.iter().filter(|(_, o)| o.code == 0).count();
    if json {
        let v = serde_json::json!({
            "dir": path.display().to_string(),
            "replays": rows.len(),
            "verified": ok,
            "exit_code": code,
            "files": rows.iter().map(|(_, o)| o.json.clone()).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!("{:<48} {:<16} {:>8} {:>8}", "replay", "verdict", "ticks", "seconds");
        for (f, o) in &rows {
            let name = f.file_name().map_or_else(String::new, |n| n.to_string_lossy().to_string());
            println!("{name:<48} {:<16} {:>8} {:>8.2}", o.verdict, o.ticks, o.seconds);
        }
        println!("{ok} of {} replays verified (exit {code})", rows.len());
        for (f, o) in rows.iter().filter(|(_, o)| o.code != 0) {
            println!("{}:", f.display());
            for l in &o.text {
                println!("  {l}");
            }
        }
    }
    Ok(ExitCode::from(code))
}
