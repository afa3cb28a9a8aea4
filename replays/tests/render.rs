//! Verification frames on whatever adapter exists (lavapipe on CI): the
//! same state renders to identical pixels; golden frames match within the
//! tolerance; a body moved by a few centimetres fails and the difference
//! image shows where.
#![cfg(feature = "render")]

use replays::render::{camera, check_golden, compare, read_png, write_png, Camera, Renderer, Scene, Tolerance};
use sim_core::{Archetype, NoClock, Scenario, World};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn renderer() -> Option<Renderer> {
    match Renderer::new() {
        Ok(r) => {
            eprintln!("rendering on {}", r.adapter_name());
            Some(r)
        }
        Err(e) => {
            eprintln!("\n!!!!! SKIPPED: no wgpu adapter at all ({e}) !!!!!\n");
            None
        }
    }
}

fn world_at(scenario: &str, tick: u64) -> (World, Vec<Camera>) {
    let s = if scenario == "default" { Scenario::default_arena() } else { Scenario::load(&root().join("tests/scenarios").join(scenario)).expect("scenario") };
    let mut w = World::from_scenario(&s, None);
    while w.tick().0 < tick {
        w.step(&[], &mut NoClock);
    }
    let cams = s.cameras.iter().map(|c| Camera { name: c.name.clone(), eye: c.eye, target: c.target, fov_y_degrees: c.fov_y_degrees }).collect();
    (w, cams)
}

#[test]
fn same_state_renders_identical_pixels() {
    let Some(r) = renderer() else { return };
    let (w, _) = world_at("default", 30);
    let scene = Scene::from_world(&w);
    let cam = camera(&scene, &[], "overview").expect("camera");
    let (a, ja) = r.render(&scene, &cam, 256, 256).expect("render");
    let (b, jb) = r.render(&scene, &cam, 256, 256).expect("render");
    assert_eq!(a, b);
    assert_eq!(ja.frame_hash, jb.frame_hash);
    assert!(a.rgba.chunks(4).any(|p| p[0] > 150 && p[2] < 120), "props (orange) are visible");
}

/// (golden file, scenario, tick, camera)
const GOLDEN: [(&str, &str, u64, &str); 5] = [
    ("default-t0.png", "default", 0, "overview"),
    ("default-t60.png", "default", 60, "overview"),
    ("default-t240.png", "default", 240, "overview"),
    ("shapes-t30.png", "shapes.toml", 30, "close"),
    ("empty-t0.png", "empty.toml", 0, "overview"),
];

#[test]
fn golden_frames_match_within_tolerance() {
    let Some(r) = renderer() else { return };
    let bless = std::env::var_os("DUALPLANE_BLESS").is_some();
    let out = std::env::temp_dir().join("dualplane-golden-failures");
    let mut failures = Vec::new();
    for (file, scenario, tick, cam_name) in GOLDEN {
        let (w, cams) = world_at(scenario, tick);
        let scene = Scene::from_world(&w);
        let cam = camera(&scene, &cams, cam_name).expect("camera");
        let (img, _) = r.render(&scene, &cam, 256, 256).expect("render");
        let golden = root().join("tests/golden").join(file);
        if bless {
            write_png(&golden, &img).expect("bless");
            continue;
        }
        let (c, files) = check_golden(&img, &golden, &out, Tolerance::default()).unwrap_or_else(|e| panic!("{file}: {e} (bless with DUALPLANE_BLESS=1)"));
        if !c.passed {
            failures.push(format!("{file}: {c:?}, wrote {files:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_body_moved_by_centimetres_fails_and_the_diff_shows_where() {
    let Some(r) = renderer() else { return };
    let (w, cams) = world_at("shapes.toml", 30);
    let scene = Scene::from_world(&w);
    let cam = camera(&scene, &cams, "close").expect("camera");
    let (reference, _) = r.render(&scene, &cam, 256, 256).expect("render");
    // Move the ball (prop row 1) 5 cm along x.
    let mut moved = scene.clone();
    let ball = moved.instances.iter_mut().find(|i| i.archetype == Archetype::Prop as u8 && i.shape == 1).expect("ball");
    ball.pos[0] += 0.05;
    let ball_pos = ball.pos;
    let (img, _) = r.render(&moved, &cam, 256, 256).expect("render");
    let (c, diff) = compare(&img, &reference, Tolerance::default());
    assert!(!c.passed, "a 5 cm move must fail the check: {c:?}");
    let (x0, y0, x1, y1) = c.bbox.expect("difference region");
    // The ball projects to the middle of the close camera's frame.
    let vp = replays::render::scene::view_proj(&cam, 1.0);
    let p = [ball_pos[0], ball_pos[1], ball_pos[2], 1.0];
    let clip: Vec<f32> = (0..4).map(|r| (0..4).map(|k| vp[k][r] * p[k]).sum()).collect();
    let (sx, sy) = ((clip[0] / clip[3] * 0.5 + 0.5) * 256.0, (0.5 - clip[1] / clip[3] * 0.5) * 256.0);
    assert!((x0 as f32 - 4.0..=x1 as f32 + 4.0).contains(&sx) && (y0 as f32 - 4.0..=y1 as f32 + 4.0).contains(&sy), "diff box {:?} should surround the ball at ({sx}, {sy})", c.bbox);
    assert!(x1 - x0 < 80 && y1 - y0 < 80, "the difference is local: {:?}", c.bbox);
    assert!(diff.rgba.chunks(4).any(|p| p[0] > 128 && p[1] == 0), "diff image marks pixels in red");
    // The real check path writes actual/expected/diff images.
    let dir = tempdir();
    let golden = dir.join("shapes.png");
    write_png(&golden, &reference).expect("write");
    let (c2, files) = check_golden(&img, &golden, &dir, Tolerance::default()).expect("check");
    assert!(!c2.passed);
    assert_eq!(files.len(), 3);
    for f in &files {
        assert!(read_png(f).is_ok(), "{}", f.display());
    }
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("dualplane-render-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}
