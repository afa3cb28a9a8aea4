//! The server's replays: one per run, or one per match (`--record-match
//! clients`: a match starts with the first client's join and ends when the
//! last client leaves, or at drain). Files are uniquely named and never
//! truncated; a recorder that fails ends its recording, never the match.

use super::stats::Stats;
use crate::admin::Metrics;
use replays::{Recorder, RecorderConfig};
use sim_core::{MicroPlan, World};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// When a replay file starts and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RecordMatch {
    /// One file from start to drain (under Agones a pod is one match).
    Run,
    /// A file per match: from the first client's join to the last one's leave.
    Clients,
}

#[derive(Debug)]
pub(crate) struct Recording {
    dir: PathBuf,
    /// `MATCH-SERVER-UNIXSECONDS` (a match number added per match).
    stem: String,
    scenario: String,
    scenario_hash: u64,
    config: RecorderConfig,
    mode: RecordMatch,
    matches: u32,
    current: Option<Recorder>,
    /// Clients joined and not yet left.
    live: usize,
    /// Recordings being closed off the tick thread (joined at drain).
    closing: Vec<std::thread::JoinHandle<()>>,
}

impl Recording {
    pub(crate) fn new(dir: PathBuf, stem: String, scenario: String, scenario_hash: u64, config: RecorderConfig, mode: RecordMatch) -> Recording {
        Recording { dir, stem, scenario, scenario_hash, config, mode, matches: 0, current: None, live: 0, closing: Vec::new() }
    }

    /// Starts a recording of `world` from its current tick.
    pub(crate) fn open(&mut self, world: &World, stats: &Stats) -> Result<(), replays::RecordError> {
        self.matches += 1;
        let stem = match self.mode {
            RecordMatch::Run => self.stem.clone(),
            RecordMatch::Clients => format!("{}-m{}", self.stem, self.matches),
        };
        let r = Recorder::create_new_in(&self.dir, &stem, world, &self.scenario, self.scenario_hash, self.config)?;
        if let Ok(mut f) = stats.replays.lock() {
            f.push(r.path().display().to_string());
        }
        self.current = Some(r);
        Ok(())
    }

    /// Before the step of a tick in which `joining` clients ask to join: a
    /// match that starts records from the state before their join plans,
    /// so the joins themselves are in the file.
    pub(crate) fn before_step(&mut self, world: &World, joining: usize, stats: &Stats, metrics: &Metrics) {
        if self.mode == RecordMatch::Clients && self.current.is_none() && joining > 0
            && let Err(e) = crate::threads::spawning_unraised(|| self.open(world, stats)) {
                fail(stats, metrics, &format!("cannot start a replay in {}: {e}", self.dir.display()));
            }
    }

    /// Clients that joined (their reply went out) and left this tick.
    pub(crate) fn clients(&mut self, joined: usize, left: usize) {
        self.live = (self.live + joined).saturating_sub(left);
    }

    /// Records the tick `world` just stepped; ends the match when its last
    /// client has left; ends the recording when it fails.
    pub(crate) fn after_step(&mut self, world: &World, plans: &[MicroPlan], stats: &Stats, metrics: &Metrics) {
        let failure = match &self.current {
            Some(r) if r.stats().failed.load(Ordering::Relaxed) => Some(r.stats().failure().unwrap_or_default()),
            Some(r) => r.record(world, plans).err().map(|e| e.to_string()),
            None => None,
        };
        if let Some(why) = failure
            && let Some(r) = self.current.take() {
                fail(stats, metrics, &format!("the replay {} stopped: {why}; the match goes on", r.path().display()));
                metrics.replay_bytes.set(r.stats().bytes_written.load(Ordering::Relaxed) as i64);
                metrics.recorder_queue.set(0);
                self.close_elsewhere(r, metrics);
                return;
            }
        if self.mode == RecordMatch::Clients && self.live == 0
            && let Some(r) = self.current.take() {
                self.close_elsewhere(r, metrics);
                return;
            }
        if let Some(r) = &self.current {
            let rs = r.stats();
            metrics.replay_bytes.set(rs.bytes_written.load(Ordering::Relaxed) as i64);
            metrics.recorder_queue.set(rs.queued.load(Ordering::Relaxed) as i64);
            metrics.recorder_stalls.set(rs.stalls.load(Ordering::Relaxed) as i64);
        }
    }

    /// At drain: flushes and closes the current recording (on this thread,
    /// so the process exits only once it is on disk).
    pub(crate) fn finish(mut self, stats: &Stats, metrics: &Metrics) {
        if let Some(r) = self.current.take() {
            close(r, stats, metrics);
        }
        for h in self.closing.drain(..) {
            let _ = h.join();
        }
    }

    /// Closing joins the writer (flush, index, fsync): off the tick thread.
    fn close_elsewhere(&mut self, r: Recorder, metrics: &Metrics) {
        self.closing.retain(|h| !h.is_finished());
        let m = metrics.clone();
        let spawned = crate::threads::spawning_unraised(|| std::thread::Builder::new().name("replay-close".into()).spawn(move || {
            let path = r.path().display().to_string();
            let failed = r.stats().failed.load(Ordering::Relaxed);
            if let Err(e) = r.close()
                && !failed {
                    eprintln!("dualplane: the replay {path} did not close: {e}");
                    m.replay_failures.inc();
                }
        }));
        match spawned {
            Ok(h) => self.closing.push(h),
            Err(e) => eprintln!("dualplane: cannot start a thread to close a replay: {e}"),
        }
    }
}

fn fail(stats: &Stats, metrics: &Metrics, why: &str) {
    eprintln!("dualplane: {why}");
    metrics.replay_failures.inc();
    if let Ok(mut f) = stats.recording_failure.lock() {
        *f = Some(why.to_string());
    }
}

fn close(r: Recorder, stats: &Stats, metrics: &Metrics) {
    let path = r.path().display().to_string();
    let failed = r.stats().failed.load(Ordering::Relaxed);
    if let Err(e) = r.close()
        && !failed {
            fail(stats, metrics, &format!("the replay {path} did not close: {e}"));
        }
}
