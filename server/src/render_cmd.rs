//! `dualplane render`: a verification frame of a scenario or replay tick,
//! optionally checked against a golden image.

use anyhow::Context;
use replays::render::{camera, check_golden, write_png, Camera, Renderer, Scene, Tolerance};
use sim_core::{NoClock, Scenario, World};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Scenario to simulate up to --tick (default: the embedded arena).
    #[arg(long, conflicts_with = "replay")]
    scenario: Option<PathBuf>,
    /// Replay to re-simulate up to --tick.
    #[arg(long)]
    replay: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    tick: u64,
    /// Camera name: the scenario's cameras, or the built-in "overview"/"top".
    #[arg(long, default_value = "overview")]
    camera: String,
    /// Image size WxH.
    #[arg(long, default_value = "512x512", value_parser = parse_size)]
    size: (u32, u32),
    /// Output PNG.
    #[arg(short = 'o', long)]
    out: PathBuf,
    /// Golden image to compare with; exit 1 on mismatch (actual, expected
    /// and diff images are written next to --out).
    #[arg(long)]
    check: Option<PathBuf>,
    /// Overwrite the golden image with this frame (also DUALPLANE_BLESS=1).
    #[arg(long)]
    bless: bool,
    /// Per-channel difference tolerated (0-255).
    #[arg(long, default_value_t = Tolerance::default().channel)]
    tolerance_channel: u8,
    /// Fraction of pixels allowed over the channel tolerance.
    #[arg(long, default_value_t = Tolerance::default().max_fraction)]
    tolerance_fraction: f64,
    /// Render the frame this many more times and report the mean frame time
    /// of the repeats (the first frame includes shader compilation).
    #[arg(long, default_value_t = 0)]
    repeat: u32,
    #[arg(long)]
    json: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("expected WxH, found {s:?}"))?;
    let p = |v: &str| v.parse::<u32>().ok().filter(|n| (16..=8192).contains(n)).ok_or_else(|| format!("expected sizes in 16..=8192, found {s:?}"));
    Ok((p(w)?, p(h)?))
}

/// Scenario cameras as render cameras.
pub fn scenario_cameras(s: &Scenario) -> Vec<Camera> {
    s.cameras.iter().map(|c| Camera { name: c.name.clone(), eye: c.eye, target: c.target, fov_y_degrees: c.fov_y_degrees }).collect()
}

pub fn run(a: &RenderArgs) -> anyhow::Result<ExitCode> {
    let (world, cams) = match &a.replay {
        Some(p) => {
            let r = replays::Replay::open(p).with_context(|| p.display().to_string())?;
            (r.state_at(a.tick)?, Vec::new())
        }
        None => {
            let s = match &a.scenario {
                Some(p) => Scenario::load(p)?,
                None => Scenario::default_arena(),
            };
            let mut w = World::from_scenario(&s, None);
            while w.tick().0 < a.tick {
                w.step(&[], &mut NoClock);
            }
            (w, scenario_cameras(&s))
        }
    };
    let scene = Scene::from_world(&world);
    let cam = camera(&scene, &cams, &a.camera)?;
    let renderer = Renderer::new()?;
    let (img, journal) = renderer.render(&scene, &cam, a.size.0, a.size.1)?;
    write_png(&a.out, &img)?;
    let mut result = serde_json::json!({"out": a.out.display().to_string(), "journal": journal, "world_hash": format!("{:#018x}", world.world_hash())});
    if a.repeat > 0 {
        let mut ms = Vec::new();
        for _ in 0..a.repeat {
            let t0 = std::time::Instant::now();
            let (again, _) = renderer.render(&scene, &cam, a.size.0, a.size.1)?;
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(again == img, "the same state rendered different pixels");
        }
        ms.sort_by(f64::total_cmp);
        result["repeat"] = serde_json::json!({"frames": a.repeat, "ms_mean": ms.iter().sum::<f64>() / ms.len() as f64, "ms_median": ms[ms.len() / 2], "bodies": scene.instances.len()});
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(golden) = &a.check {
        let bless = a.bless || std::env::var_os("DUALPLANE_BLESS").is_some();
        if bless {
            write_png(golden, &img)?;
            result["blessed"] = serde_json::json!(golden.display().to_string());
        } else {
            let dir = a.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let tol = Tolerance { channel: a.tolerance_channel, max_fraction: a.tolerance_fraction };
            let (c, files) = check_golden(&img, golden, dir, tol)?;
            if !c.passed {
                code = ExitCode::from(1);
            }
            result["check"] = serde_json::json!({"golden": golden.display().to_string(), "comparison": c, "tolerance": tol, "written": files});
        }
    }
    if a.json {
        println!("{result}");
    } else {
        println!("{}: tick {} on {} ({}), {}x{} in {:.2} ms, frame hash {}", a.out.display(), journal.tick, journal.adapter, journal.device_type, journal.width, journal.height, journal.render_readback_ms, journal.frame_hash);
        if let Some(r) = result.get("repeat") {
            println!("repeat: {r}");
        }
        if let Some(c) = result.get("check") {
            println!("check: {}", c);
        }
    }
    Ok(code)
}
