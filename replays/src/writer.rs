//! The recorder: the tick thread hands records to a writer thread through a
//! bounded queue, so disk never blocks a tick — unless the queue is full, in
//! which case the tick waits (nothing is dropped) and the stall is counted
//! and reported to the caller for its journal.
//!
//! A failing write (a full disk, an IO error) ends the recording, never the
//! match: the writer cuts the file back to its last complete chunk, appends
//! a FAILED chunk naming the error (when the disk takes it), sets
//! [`RecorderStats::failed`], and from then on drops what it is sent, so the
//! tick thread neither blocks nor sees an error. The file verifies up to
//! where it stopped.

use crate::format::{compress, encode_header, encode_ticks, write_chunk, ChunkKind, ReplayHeader, TickRecord, TRAILER_MAGIC};
use sim_core::{MicroPlan, World};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::io::{Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// When the writer calls fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After every chunk.
    Always,
    /// After each keyframe and at close.
    Keyframe,
    /// Only at close.
    Close,
    /// Never (the OS decides).
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<FsyncPolicy, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "keyframe" => Ok(FsyncPolicy::Keyframe),
            "close" => Ok(FsyncPolicy::Close),
            "never" => Ok(FsyncPolicy::Never),
            o => Err(format!("expected always|keyframe|close|never, found {o:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RecorderConfig {
    /// A keyframe snapshot every K ticks.
    pub keyframe_every: u64,
    /// Tick records per TICKS chunk (the most a crash can lose).
    pub flush_every: u64,
    pub fsync: FsyncPolicy,
    /// Capacity of the queue to the writer thread, in messages.
    pub queue: usize,
    pub zstd_level: i32,
    /// Simulation threads (recorded in the header, informational).
    pub threads: usize,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig { keyframe_every: 600, flush_every: 30, fsync: FsyncPolicy::Keyframe, queue: 256, zstd_level: 3, threads: 1 }
    }
}

/// Counters shared with the writer thread.
#[derive(Debug, Default)]
pub struct RecorderStats {
    pub ticks_recorded: AtomicU64,
    pub keyframes: AtomicU64,
    pub bytes_written: AtomicU64,
    pub stalls: AtomicU64,
    /// Messages queued but not yet written.
    pub queued: AtomicU64,
    /// The recording failed and stopped (see `failure`); the match goes on.
    pub failed: AtomicBool,
    /// Why the recording failed.
    pub failure: Mutex<Option<String>>,
}

impl RecorderStats {
    /// Why the recording failed, if it did.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

enum Msg {
    Tick(TickRecord),
    /// A keyframe's state, copied on the tick thread, encoded on the writer's.
    Keyframe(Box<sim_core::Capture>),
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("snapshot failed: {0}")]
    Snapshot(String),
    #[error("the writer thread stopped: {0}")]
    WriterGone(String),
}

/// What recording one tick cost the tick thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// The queue was full and the tick waited for the writer.
    pub stalled: bool,
}

#[derive(Debug)]
pub struct Recorder {
    tx: Option<SyncSender<Msg>>,
    writer: Option<JoinHandle<Result<(), RecordError>>>,
    config: RecorderConfig,
    stats: Arc<RecorderStats>,
    path: PathBuf,
}

impl Recorder {
    /// Creates the file, writes the header and a keyframe of `world`'s
    /// current tick, and starts the writer thread.
    pub fn create(path: &Path, world: &World, scenario_name: &str, scenario_hash: u64, config: RecorderConfig) -> Result<Recorder, RecordError> {
        let file = File::create(path).map_err(|e| RecordError::Io(path.display().to_string(), e))?;
        Recorder::start(file, path, world, scenario_name, scenario_hash, config)
    }

    /// Like [`Recorder::create`], into a new file `DIR/STEM.rpl` (or
    /// `STEM-1.rpl`, `STEM-2.rpl`, ... when taken): never truncates a
    /// replay, even one another process is writing.
    pub fn create_new_in(dir: &Path, stem: &str, world: &World, scenario_name: &str, scenario_hash: u64, config: RecorderConfig) -> Result<Recorder, RecordError> {
        for k in 0..10_000u32 {
            let path = dir.join(if k == 0 { format!("{stem}.rpl") } else { format!("{stem}-{k}.rpl") });
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Recorder::start(file, &path, world, scenario_name, scenario_hash, config),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(RecordError::Io(path.display().to_string(), e)),
            }
        }
        Err(RecordError::Io(dir.join(stem).display().to_string(), std::io::Error::other("10,000 replays of this name exist")))
    }

    fn start(mut file: File, path: &Path, world: &World, scenario_name: &str, scenario_hash: u64, config: RecorderConfig) -> Result<Recorder, RecordError> {
        let io = |e| RecordError::Io(path.display().to_string(), e);
        let header = ReplayHeader {
            format_version: crate::format::FORMAT_VERSION,
            ports_semver: sim_core::PORTS_SEMVER.to_string(),
            ports_schema_hash: sim_core::PORTS_SCHEMA_HASH,
            scenario_name: scenario_name.to_string(),
            scenario_hash,
            seed: world.config().seed,
            tick_rate: world.config().tick_rate,
            build: crate::build_id(),
            build_info: crate::identity::BuildInfo::current(config.threads),
            keyframe_every: config.keyframe_every,
            start_tick: world.tick().0,
        };
        let head = encode_header(&header);
        file.write_all(&head).map_err(io)?;
        let stats = Arc::new(RecorderStats::default());
        stats.bytes_written.fetch_add(head.len() as u64, Ordering::Relaxed);
        let capture = Box::new(world.capture());
        let (tx, rx) = sync_channel::<Msg>(config.queue.max(1));
        let st = Arc::clone(&stats);
        let p = path.display().to_string();
        let first = world.tick().0;
        let writer = std::thread::Builder::new()
            .name("replay-writer".into())
            .spawn(move || writer_loop(file, rx, config, st, p, first))
            .map_err(|e| RecordError::Io(path.display().to_string(), e))?;
        let r = Recorder { tx: Some(tx), writer: Some(writer), config, stats, path: path.to_path_buf() };
        r.send(Msg::Keyframe(capture))?;
        Ok(r)
    }

    #[must_use]
    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, msg: Msg) -> Result<RecordOutcome, RecordError> {
        let Some(tx) = &self.tx else { return Err(RecordError::WriterGone("recorder closed".into())) };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(msg) {
            Ok(()) => Ok(RecordOutcome { stalled: false }),
            Err(TrySendError::Full(msg)) => {
                self.stats.stalls.fetch_add(1, Ordering::Relaxed);
                tx.send(msg).map_err(|_| RecordError::WriterGone("writer thread exited".into()))?;
                Ok(RecordOutcome { stalled: true })
            }
            Err(TrySendError::Disconnected(_)) => Err(RecordError::WriterGone("writer thread exited".into())),
        }
    }

    /// Records the tick `world` just stepped, given the plans that were
    /// passed to `step`; adds a keyframe every `keyframe_every` ticks.
    pub fn record(&self, world: &World, plans: &[MicroPlan]) -> Result<RecordOutcome, RecordError> {
        if self.stats.failed.load(Ordering::Relaxed) {
            return Ok(RecordOutcome::default());
        }
        let rec = TickRecord {
            tick: world.tick().0,
            world_hash: world.world_hash(),
            plans: plans.iter().map(|p| p.bytes().to_vec()).collect(),
            columns: world.hashes().columns.clone(),
        };
        let mut out = self.send(Msg::Tick(rec))?;
        if self.config.keyframe_every > 0 && world.tick().0.is_multiple_of(self.config.keyframe_every) {
            // Copied here (a fraction of encoding's cost), encoded there.
            out.stalled |= self.send(Msg::Keyframe(Box::new(world.capture())))?.stalled;
        }
        Ok(out)
    }

    /// Flushes everything, writes the index and END, fsyncs (unless the
    /// policy is `never`), and joins the writer.
    pub fn close(mut self) -> Result<(), RecordError> {
        self.tx.take();
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(RecordError::WriterGone("writer thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Writes one chunk (kind, payload) at the file's offset; returns where it started.
type WriteChunk<'a> = dyn FnMut(&mut File, ChunkKind, &[u8], &mut u64) -> Result<u64, RecordError> + 'a;

fn writer_loop(
    mut file: File,
    rx: std::sync::mpsc::Receiver<Msg>,
    config: RecorderConfig,
    stats: Arc<RecorderStats>,
    path: String,
    first_tick: u64,
) -> Result<(), RecordError> {
    let mut offset = stats.bytes_written.load(Ordering::Relaxed);
    let Err(e) = write_loop(&mut file, &rx, config, &stats, &path, first_tick, &mut offset) else { return Ok(()) };
    // Cut back to the last complete chunk and mark the file failed (best
    // effort: a full disk may refuse even that); then drain, so the tick
    // thread never waits on, or hears from, a recorder that has stopped.
    let reason = e.to_string();
    if let Ok(mut f) = stats.failure.lock() {
        *f = Some(reason.clone());
    }
    stats.failed.store(true, Ordering::Relaxed);
    let _ = file.set_len(offset).and_then(|()| file.seek(SeekFrom::Start(offset)));
    let mut mark = Vec::new();
    write_chunk(&mut mark, ChunkKind::Failed, reason.as_bytes());
    if file.write_all(&mark).and_then(|()| file.sync_all()).is_ok() {
        stats.bytes_written.store(offset + mark.len() as u64, Ordering::Relaxed);
    } else {
        let _ = file.set_len(offset);
    }
    while rx.recv().is_ok() {
        stats.queued.fetch_sub(1, Ordering::Relaxed);
    }
    Err(e)
}

fn write_loop(
    file: &mut File,
    rx: &std::sync::mpsc::Receiver<Msg>,
    config: RecorderConfig,
    stats: &RecorderStats,
    path: &str,
    first_tick: u64,
    offset: &mut u64,
) -> Result<(), RecordError> {
    let io = |e| RecordError::Io(path.to_string(), e);
    let mut pending: Vec<TickRecord> = Vec::new();
    let mut index: Vec<(u64, u64)> = Vec::new();
    let mut last_tick = first_tick;
    let mut buf = Vec::new();
    let mut write = |file: &mut File, kind: ChunkKind, payload: &[u8], offset: &mut u64| -> Result<u64, RecordError> {
        buf.clear();
        write_chunk(&mut buf, kind, payload);
        file.write_all(&buf).map_err(io)?;
        let at = *offset;
        *offset += buf.len() as u64;
        stats.bytes_written.store(*offset, Ordering::Relaxed);
        if config.fsync == FsyncPolicy::Always {
            file.sync_data().map_err(io)?;
        }
        Ok(at)
    };
    let flush_ticks = |file: &mut File, pending: &mut Vec<TickRecord>, offset: &mut u64, write: &mut WriteChunk<'_>| -> Result<(), RecordError> {
        if pending.is_empty() {
            return Ok(());
        }
        let payload = compress(&encode_ticks(pending), config.zstd_level);
        write(file, ChunkKind::Ticks, &payload, offset)?;
        pending.clear();
        Ok(())
    };
    while let Ok(msg) = rx.recv() {
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        match msg {
            Msg::Tick(r) => {
                last_tick = r.tick;
                pending.push(r);
                stats.ticks_recorded.fetch_add(1, Ordering::Relaxed);
                if pending.len() as u64 >= config.flush_every.max(1) {
                    flush_ticks(file, &mut pending, offset, &mut write)?;
                }
            }
            Msg::Keyframe(capture) => {
                flush_ticks(file, &mut pending, offset, &mut write)?;
                let tick = capture.tick();
                let snapshot = capture.encode().map_err(|e| RecordError::Snapshot(e.to_string()))?;
                let mut payload = tick.to_le_bytes().to_vec();
                payload.extend_from_slice(&compress(&snapshot, config.zstd_level));
                let at = write(file, ChunkKind::Keyframe, &payload, offset)?;
                index.push((tick, at));
                stats.keyframes.fetch_add(1, Ordering::Relaxed);
                if config.fsync == FsyncPolicy::Keyframe {
                    file.sync_data().map_err(io)?;
                }
            }
        }
    }
    // The sender is gone: close cleanly.
    flush_ticks(file, &mut pending, offset, &mut write)?;
    let mut idx = (index.len() as u32).to_le_bytes().to_vec();
    for (t, o) in &index {
        idx.extend_from_slice(&t.to_le_bytes());
        idx.extend_from_slice(&o.to_le_bytes());
    }
    // Index, END and trailer in one write: a failure leaves the file at its
    // last tick chunk, never at an END without its trailer.
    let index_at = *offset;
    let mut tail = Vec::new();
    write_chunk(&mut tail, ChunkKind::Index, &idx);
    write_chunk(&mut tail, ChunkKind::End, &last_tick.to_le_bytes());
    tail.extend_from_slice(&TRAILER_MAGIC);
    tail.extend_from_slice(&index_at.to_le_bytes());
    file.write_all(&tail).map_err(io)?;
    *offset += tail.len() as u64;
    stats.bytes_written.store(*offset, Ordering::Relaxed);
    if config.fsync != FsyncPolicy::Never {
        file.sync_all().map_err(io)?;
    }
    Ok(())
}
