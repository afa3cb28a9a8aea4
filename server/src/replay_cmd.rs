//! `dualplane replay ...`: info, verify, diff, seek, bisect, plant.

use anyhow::Context;
use replays::plant::Plant;
use replays::{Replay, VerifyOptions};
use sim_core::{Archetype, ColumnId};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum ReplayCommand {
    /// Header, tick range, keyframes, sizes, and whether the file is complete.
    Info {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Re-simulate and compare every tick's hashes with the recording.
    ///
    /// Exit codes: 0 verified (the whole file, or with --allow-truncated the
    /// prefix of a file that ends early); 1 divergence; 2 usage or IO error;
    /// 3 corrupt (a damaged chunk with bytes after it, a bad header or
    /// keyframe, anything wrong in a cleanly closed file); 4 truncated (the
    /// file ends early: a crash, or a recording marked failed); 5 recorded
    /// by another build (refused). `--json` carries `verdict` and
    /// `exit_code`.
    #[command(verbatim_doc_comment)]
    ///
    /// FILE may be a directory: every `*.rpl` in it is verified (in name
    /// order), with a summary table (or `--json`: `files`, one report each)
    /// and the most serious exit code among them.
    Verify {
        file: PathBuf,
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
        /// Keyframe segments verified in parallel.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// A file that ends early (crash, failed recording) exits 0 when
        /// the part it holds verifies.
        #[arg(long)]
        allow_truncated: bool,
        /// Re-simulate a replay recorded by another build (commit, rustc,
        /// target, rapier3d, ports schema); the report says so.
        #[arg(long)]
        allow_other_build: bool,
        #[arg(long)]
        json: bool,
    },
    /// Compare two replays of one match (or one replay against a
    /// re-simulation by this build): first divergent tick, columns,
    /// entities and both values. Exit 1 when they differ.
    Diff {
        a: PathBuf,
        b: Option<PathBuf>,
        /// Write a desync report directory (summary.json, entities.json,
        /// a.snap, b.snap).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Entity differences to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write the world after tick T as a snapshot file (`Sim.restore` and
    /// `World::restore` take it). With `--through T2`: one snapshot per
    /// tick T..=T2, re-simulated in one pass, as OUT/<tick>.snap.
    Seek {
        file: PathBuf,
        #[arg(long)]
        tick: u64,
        #[arg(long)]
        through: Option<u64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Find the first keyframe that re-simulation does not reproduce,
    /// without trusting per-tick hashes.
    Bisect {
        file: PathBuf,
        /// Keyframe segments checked in parallel.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Fault injection for testing: rewrite FILE with one planted change.
    Plant {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Flip a bit of a recorded plan: TICK:PLAN:OFFSET.
        #[arg(long)]
        plan_byte: Option<String>,
        /// Flip a bit of a recorded column hash: TICK:ARCHETYPE:COLUMN.
        #[arg(long)]
        column_hash: Option<String>,
        /// Flip a bit of an f32 in a keyframe: TICK:ARCHETYPE:COLUMN:ROW.
        #[arg(long)]
        keyframe_f32: Option<String>,
    },
}

pub fn run(cmd: &ReplayCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReplayCommand::Info { file, json } => info(file, *json),
        ReplayCommand::Verify { file, from, to, jobs, allow_truncated, allow_other_build, json } => {
            let opts = VerifyOptions { from: *from, to: *to, jobs: *jobs, allow_truncated: *allow_truncated, allow_other_build: *allow_other_build };
            crate::replay_verify::run(file, opts, *json)
        }
        ReplayCommand::Diff { a, b, report, limit, json } => diff(a, b.as_deref(), report.as_deref(), *limit, *json),
        ReplayCommand::Seek { file, tick, through: None, out } => {
            let r = open(file)?;
            let w = r.state_at(*tick)?;
            std::fs::write(out, w.snapshot()?).with_context(|| format!("{}: cannot write", out.display()))?;
            println!("wrote the world after tick {tick} (hash {:#018x}) to {}", w.world_hash(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Seek { file, tick, through: Some(last), out } => {
            if last < tick {
                anyhow::bail!("--through {last} is before --tick {tick}: expected a tick range T ..= T2");
            }
            let r = open(file)?;
            std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
            let mut n = 0u64;
            r.states(*tick, *last, |w| {
                n += 1;
                let path = out.join(format!("{}.snap", w.tick().0));
                std::fs::write(&path, w.snapshot()?).with_context(|| format!("{}: cannot write", path.display()))
            })?;
            println!("wrote {n} snapshots (ticks {tick} ..= {last}) to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Bisect { file, jobs, json } => {
            let r = open(file)?;
            let b = replays::bisect(&r, *jobs)?;
            if *json {
                println!("{}", serde_json::to_string(&b)?);
            } else {
                match b.first_bad_keyframe {
                    Some(t) => println!("first bad keyframe: tick {t} (last good: tick {}); {} segments, {} ticks simulated", b.last_good_keyframe.unwrap_or(0), b.segments_checked, b.ticks_simulated),
                    None => println!("every keyframe is reproduced by re-simulation; {} segments, {} ticks simulated", b.segments_checked, b.ticks_simulated),
                }
            }
            Ok(if b.first_bad_keyframe.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        ReplayCommand::Plant { file, out, plan_byte, column_hash, keyframe_f32 } => {
            let r = open(file)?;
            let p = parse_plant(plan_byte.as_deref(), column_hash.as_deref(), keyframe_f32.as_deref())?;
            replays::plant::plant(&r, &p, out)?;
            println!("planted {p:?} into {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open(file: &Path) -> anyhow::Result<Replay> {
    let r = Replay::open(file).with_context(|| format!("{}", file.display()))?;
    if let Some(s) = &r.stop {
        eprintln!("dualplane: {}: read up to byte {}: {}", file.display(), s.offset, s.reason);
    }
    Ok(r)
}

fn parts<'a>(s: &'a str, n: usize, what: &str) -> anyhow::Result<Vec<&'a str>> {
    let v: Vec<&str> = s.split(':').collect();
    anyhow::ensure!(v.len() == n, "expected {what}, found {s:?}");
    Ok(v)
}

fn arch(s: &str) -> anyhow::Result<Archetype> {
    Archetype::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
        let valid: Vec<&str> = Archetype::ALL.iter().map(|a| a.name()).collect();
        anyhow::anyhow!("unknown archetype {s:?} (valid: {})", valid.join(", "))
    })
}

fn col(s: &str) -> anyhow::Result<ColumnId> {
    ColumnId::from_name(s).ok_or_else(|| {
        let valid: Vec<&str> = sim_core::schema::COLUMNS.iter().map(|d| d.name).collect();
        anyhow::anyhow!("unknown column {s:?} (valid: {})", valid.join(", "))
    })
}

fn parse_plant(plan: Option<&str>, hash: Option<&str>, kf: Option<&str>) -> anyhow::Result<Plant> {
    Ok(match (plan, hash, kf) {
        (Some(s), None, None) => {
            let v = parts(s, 3, "TICK:PLAN:OFFSET")?;
            Plant::PlanByte { tick: v[0].parse()?, plan: v[1].parse()?, offset: v[2].parse()? }
        }
        (None, Some(s), None) => {
            let v = parts(s, 3, "TICK:ARCHETYPE:COLUMN")?;
            Plant::ColumnHash { tick: v[0].parse()?, archetype: arch(v[1])?, column: col(v[2])? }
        }
        (None, None, Some(s)) => {
            let v = parts(s, 4, "TICK:ARCHETYPE:COLUMN:ROW")?;
            Plant::KeyframeF32 { tick: v[0].parse()?, archetype: arch(v[1])?, column: col(v[2])?, row: v[3].parse()? }
        }
        _ => anyhow::bail!("give exactly one of --plan-byte, --column-hash, --keyframe-f32"),
    })
}

fn info(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let r = open(file)?;
    let (first, last) = r.range();
    let z = replays::sizes::sizes(&r);
    let kf_sizes = &z.keyframe_bytes;
    let v = serde_json::json!({
        "file": file.display().to_string(),
        "header": r.header,
        "first_tick": first,
        "last_tick": last,
        "ticks": z.ticks,
        "keyframes": r.keyframes.iter().map(|k| k.tick).collect::<Vec<_>>(),
        "keyframe_bytes_mean": z.keyframe_bytes_mean,
        "file_bytes": z.file_bytes,
        "bytes_per_tick": z.bytes_per_tick,
        "bytes_per_tick_without_keyframes": z.bytes_per_tick_without_keyframes,
        "keyframe_bytes": kf_sizes,
        "bytes_per_hour": z.bytes_per_hour,
        "sources": replays::sources::sources(&r),
        "complete": r.clean_end,
        "stopped": r.stop,
    });
    if json {
        println!("{v}");
    } else {
        println!("{}: replay v{} of {:?} (seed {}, {} Hz, {})", file.display(), r.header.format_version, r.header.scenario_name, r.header.seed, r.header.tick_rate, r.header.build);
        println!("  ports {} schema {:#018x}", r.header.ports_semver, r.header.ports_schema_hash);
        println!("  ticks {first}..={last} ({}), {} keyframes (every {}), mean keyframe {} B", z.ticks, r.keyframes.len(), r.header.keyframe_every, z.keyframe_bytes_mean);
        println!("  {} bytes, {:.1} B/tick ({:.1} B/tick without keyframes)", r.file_bytes, v["bytes_per_tick"].as_f64().unwrap_or(0.0), v["bytes_per_tick_without_keyframes"].as_f64().unwrap_or(0.0));
        println!("  keyframe bytes: {kf_sizes:?} (all full snapshots); {:.1} MB per hour", v["bytes_per_hour"].as_f64().unwrap_or(0.0) / 1e6);
        for s in replays::sources::sources(&r) {
            println!(
                "  source {:>5}: ticks {}..={}, {} plans, {} avatars spawned, {} NPCs granted, {} released",
                s.source, s.first_tick, s.last_tick, s.plans, s.avatars_spawned, s.npcs_granted, s.npcs_released
            );
        }
        match &r.stop {
            None => println!("  complete"),
            Some(s) => println!("  INCOMPLETE: stopped at byte {}: {}", s.offset, s.reason),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(a: &Path, b: Option<&Path>, report_dir: Option<&Path>, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    let ra = open(a)?;
    let rb = b.map(open).transpose()?;
    let d = replays::diff(&ra, rb.as_ref(), limit)?;
    if let Some(dir) = report_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        std::fs::write(dir.join("summary.json"), serde_json::to_vec_pretty(&serde_json::json!({
            "a": a.display().to_string(),
            "b": b.map_or("re-simulation by this build".to_string(), |p| p.display().to_string()),
            "tick": d.tick, "a_world_hash": d.a_world_hash, "b_world_hash": d.b_world_hash,
            "columns": d.columns, "note": d.note, "entity_count": d.entities.len(),
        }))?)?;
        std::fs::write(dir.join("entities.json"), serde_json::to_vec_pretty(&d.entities)?)?;
        if let Some((wa, wb)) = &d.states {
            std::fs::write(dir.join("a.snap"), wa.snapshot()?)?;
            std::fs::write(dir.join("b.snap"), wb.snapshot()?)?;
            #[cfg(feature = "render")]
            if let Err(e) = desync_frames(dir, wa, wb) {
                eprintln!("dualplane: desync report without frames: {e}");
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string(&d)?);
    } else {
        match d.tick {
            None => println!("no divergence{}", d.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()),
            Some(t) => {
                println!("first divergent tick {t}: world hash A {} / B {}", d.a_world_hash.as_deref().unwrap_or("?"), d.b_world_hash.as_deref().unwrap_or("?"));
                for c in &d.columns {
                    println!("  column {}/{}: A {} / B {}", c.archetype, c.column, c.expected, c.actual);
                }
                for e in &d.entities {
                    println!("  entity {} ({}) {}: A {} / B {}", e.handle, e.archetype, e.column, e.a, e.b);
                }
                if let Some(n) = &d.note {
                    println!("  note: {n}");
                }
            }
        }
    }
    Ok(if d.tick.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Both runs' frames at the divergent tick and their difference image.
#[cfg(feature = "render")]
fn desync_frames(dir: &Path, a: &sim_core::World, b: &sim_core::World) -> anyhow::Result<()> {
    use replays::render::{camera, compare, write_png, Renderer, Scene, Tolerance};
    let r = Renderer::new()?;
    let (sa, sb) = (Scene::from_world(a), Scene::from_world(b));
    let cam = camera(&sa, &[], "overview")?;
    let (ia, _) = r.render(&sa, &cam, 512, 512)?;
    let (ib, _) = r.render(&sb, &cam, 512, 512)?;
    let (_, diff) = compare(&ia, &ib, Tolerance { channel: 0, max_fraction: 0.0 });
    write_png(&dir.join("a.png"), &ia)?;
    write_png(&dir.join("b.png"), &ib)?;
    write_png(&dir.join("diff.png"), &diff)?;
    Ok(())
}
