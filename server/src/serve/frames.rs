//! Verification frames rendered off the tick thread.

use anyhow::Context;
use sim_core::World;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use super::*;

/// Called on the tick thread every N ticks with the world; must not block.
pub(crate) type FrameSink = Box<dyn FnMut(&World) + Send>;

/// Starts the verification-frame thread; returns the tick thread's sink
/// and the thread. Dropping the sink ends the thread once it has rendered
/// what is queued ([`finish`]).
#[cfg(feature = "render")]
pub(crate) fn frame_sink(stats: Arc<Stats>, dir: Option<PathBuf>) -> anyhow::Result<(FrameSink, JoinHandle<()>)> {
    use replays::render::{camera, write_png, Renderer, Scene};
    if let Some(d) = &dir {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    let (tx, rx) = sync_channel::<Scene>(2);
    let st = Arc::clone(&stats);
    let thread = std::thread::Builder::new().name("frames".into()).spawn(move || {
        let renderer = match Renderer::new() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("dualplane: verification frames disabled: {e}");
                None
            }
        };
        let mut log = dir.as_ref().and_then(|d| std::fs::OpenOptions::new().create(true).append(true).open(d.join("frames.jsonl")).ok());
        while let Ok(scene) = rx.recv() {
            let Some(r) = &renderer else {
                st.frames_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let done = camera(&scene, &[], "overview").and_then(|cam| r.render(&scene, &cam, 256, 256));
            match done {
                Ok((img, journal)) => {
                    st.frames_rendered.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = st.last_frame.lock() {
                        *l = Some((journal.tick, journal.frame_hash.clone()));
                    }
                    if let Some(d) = &dir {
                        let _ = write_png(&d.join(format!("frame-{:08}.png", journal.tick)), &img);
                    }
                    if let Some(f) = log.as_mut() {
                        use std::io::Write;
                        let _ = writeln!(f, "{}", serde_json::json!(journal));
                    }
                }
                Err(_) => {
                    st.frames_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })?;
    let sink: FrameSink = Box::new(move |w: &World| {
        if tx.try_send(Scene::from_world(w)).is_err() {
            stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok((sink, thread))
}

/// Waits, at most `limit`, for the frame thread to render what was queued
/// before its sink was dropped (at most the channel's two scenes and the
/// one in hand), so the run's counts include them; a render that hangs
/// is left behind (the process exits anyway).
pub(crate) fn finish(thread: JoinHandle<()>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if thread.is_finished() {
        // The thread's loop catches render errors; a panic there is
        // counted nowhere else, and is not the run's failure.
        let _ = thread.join();
    }
}

#[cfg(not(feature = "render"))]
pub(crate) fn frame_sink(_stats: Arc<Stats>, _dir: Option<PathBuf>) -> anyhow::Result<(FrameSink, JoinHandle<()>)> {
    anyhow::bail!("--verify-frames-every needs a build with the `render` feature")
}
