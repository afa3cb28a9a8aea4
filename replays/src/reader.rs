//! Reading replays, recovering everything before the first bad chunk.

use crate::format::{
    checksum, decode_ticks, decompress, ChunkKind, Cursor, ReplayHeader, TickRecord, CHUNK_HEADER, FORMAT_VERSION,
    MAGIC, MAX_CHUNK, MAX_HEADER_JSON, TRAILER_MAGIC,
};
use sim_core::World;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}: cannot read: {1}")]
    Io(String, std::io::Error),
    #[error("not a dualplane replay: {0}")]
    NotAReplay(String),
    #[error("replay format version {found}, this build reads {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("replay header is corrupt: {0}")]
    Header(String),
    #[error("replay holds no keyframe to start from")]
    NoKeyframe,
    #[error("tick {tick} is not in this replay (it covers {first}..={last})")]
    TickOutOfRange { tick: u64, first: u64, last: u64 },
    #[error("keyframe at tick {tick} does not decode: {reason}")]
    BadKeyframe { tick: u64, reason: String },
    #[error("{0}")]
    Other(String),
}

/// What kind of early end reading found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// The file just ends (the recorder was killed mid-write): everything
    /// before the cut is intact.
    Truncated,
    /// The recorder marked the file failed (a write failed, e.g. a full
    /// disk) and stopped: everything before the mark is intact.
    Failed,
    /// A chunk is damaged and bytes follow it, or a cleanly closed file
    /// does not add up: the file was altered after it was written.
    Corrupt,
}

/// Why reading stopped before the end of the file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stop {
    /// Byte offset of the first chunk that was not accepted.
    pub offset: u64,
    pub kind: StopKind,
    pub reason: String,
}

/// A keyframe: where its compressed snapshot lives in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyframe {
    pub tick: u64,
    pub offset: u64,
    payload: std::ops::Range<usize>,
}

/// A parsed replay (the file is held in memory; keyframes decompress on demand).
#[derive(Debug)]
pub struct Replay {
    pub header: ReplayHeader,
    /// Consecutive tick records, from `header.start_tick + 1`.
    pub ticks: Vec<TickRecord>,
    pub keyframes: Vec<Keyframe>,
    /// Set when reading stopped early (truncated or corrupt file).
    pub stop: Option<Stop>,
    /// The file ended with a valid END chunk.
    pub clean_end: bool,
    pub file_bytes: u64,
    /// Where the INDEX chunk starts (the trailer must point here).
    index_offset: Option<u64>,
    bytes: Vec<u8>,
}

impl Replay {
    pub fn open(path: &Path) -> Result<Replay, ReplayError> {
        let bytes = std::fs::read(path).map_err(|e| ReplayError::Io(path.display().to_string(), e))?;
        Replay::parse(bytes)
    }

    /// Parses a whole file. Header problems are errors; chunk problems stop
    /// the reading and are reported in `stop`.
    pub fn parse(bytes: Vec<u8>) -> Result<Replay, ReplayError> {
        let mut c = Cursor::new(&bytes);
        let magic = c.take(8).map_err(|e| ReplayError::NotAReplay(e.to_string()))?;
        if magic != MAGIC {
            return Err(ReplayError::NotAReplay(format!("magic {magic:02x?}")));
        }
        let version = c.u32().map_err(ReplayError::Header)?;
        if version != FORMAT_VERSION {
            return Err(ReplayError::Version { found: version });
        }
        let len = c.u32().map_err(ReplayError::Header)? as usize;
        if len > MAX_HEADER_JSON {
            return Err(ReplayError::Header(format!("header length {len} exceeds {MAX_HEADER_JSON}")));
        }
        let sum = c.u64().map_err(ReplayError::Header)?;
        let json = c.take(len).map_err(ReplayError::Header)?;
        if xxhash_rust::xxh3::xxh3_64(json) != sum {
            return Err(ReplayError::Header("header checksum mismatch".into()));
        }
        let header: ReplayHeader = serde_json::from_slice(json).map_err(|e| ReplayError::Header(e.to_string()))?;
        if header.start_tick > u64::MAX / 2 {
            return Err(ReplayError::Header(format!("start tick {} is out of range", header.start_tick)));
        }
        let mut replay = Replay {
            header,
            ticks: Vec::new(),
            keyframes: Vec::new(),
            stop: None,
            clean_end: false,
            file_bytes: bytes.len() as u64,
            index_offset: None,
            bytes: Vec::new(),
        };
        let mut pos = c.pos;
        // A file that ends in a trailer was closed cleanly: nothing in it
        // can be a crash's cut, so every early stop is corruption.
        let closed = bytes.len() >= pos + 16 && bytes[bytes.len() - 16..bytes.len() - 8] == TRAILER_MAGIC;
        let cut = if closed { StopKind::Corrupt } else { StopKind::Truncated };
        let stop = |offset: usize, kind: StopKind, reason: String| Some(Stop { offset: offset as u64, kind, reason });
        loop {
            let rest = bytes.len() - pos;
            if rest == 0 {
                if !replay.clean_end {
                    replay.stop = stop(pos, cut, "file ends without an END chunk (recording was interrupted)".into());
                }
                break;
            }
            if replay.clean_end {
                if rest == 16 && bytes[pos..pos + 8] == TRAILER_MAGIC {
                    let mut t = Cursor::new(&bytes[pos + 8..]);
                    let at = t.u64().unwrap_or(u64::MAX);
                    if Some(at) != replay.index_offset {
                        replay.stop = stop(pos, StopKind::Corrupt, format!("the trailer points at byte {at}, the index is at {:?}", replay.index_offset));
                    }
                    break;
                }
                replay.stop = stop(pos, StopKind::Corrupt, format!("{rest} unexpected bytes after the END chunk"));
                break;
            }
            if rest < CHUNK_HEADER {
                replay.stop = stop(pos, cut, format!("truncated chunk header ({rest} of {CHUNK_HEADER} bytes)"));
                break;
            }
            let mut h = Cursor::new(&bytes[pos..pos + CHUNK_HEADER]);
            let (kind, reserved, len, sum) = match (h.u8(), h.take(3), h.u32(), h.u64()) {
                (Ok(k), Ok(r), Ok(l), Ok(s)) => (k, r, l as usize, s),
                _ => unreachable!("16 bytes are present"),
            };
            if reserved != [0; 3] {
                replay.stop = stop(pos, StopKind::Corrupt, format!("chunk header reserved bytes {reserved:02x?}, expected zeros"));
                break;
            }
            if len > MAX_CHUNK {
                replay.stop = stop(pos, StopKind::Corrupt, format!("chunk length {len} exceeds {MAX_CHUNK}"));
                break;
            }
            if rest - CHUNK_HEADER < len {
                replay.stop = stop(pos, cut, format!("truncated chunk: {len} payload bytes declared, {} present", rest - CHUNK_HEADER));
                break;
            }
            let start = pos + CHUNK_HEADER;
            let payload = &bytes[start..start + len];
            if checksum(kind, payload) != sum {
                replay.stop = stop(pos, StopKind::Corrupt, "chunk checksum mismatch".into());
                break;
            }
            let Some(kind) = ChunkKind::from_u8(kind) else {
                replay.stop = stop(pos, StopKind::Corrupt, format!("unknown chunk kind {kind}"));
                break;
            };
            if kind == ChunkKind::Failed {
                let why = String::from_utf8_lossy(payload);
                // Nothing may follow the mark but what a failing disk left.
                replay.stop = stop(pos, StopKind::Failed, format!("the recorder marked the file failed: {why}"));
                break;
            }
            if let Err(reason) = replay.accept(kind, payload, pos, start..start + len) {
                replay.stop = stop(pos, StopKind::Corrupt, reason);
                break;
            }
            pos = start + len;
        }
        replay.bytes = bytes;
        Ok(replay)
    }

    fn next_tick(&self) -> u64 {
        self.ticks.last().map_or(self.header.start_tick, |r| r.tick) + 1
    }

    fn accept(&mut self, kind: ChunkKind, payload: &[u8], offset: usize, range: std::ops::Range<usize>) -> Result<(), String> {
        match kind {
            ChunkKind::Ticks => {
                let raw = decompress(payload)?;
                let recs = decode_ticks(&raw)?;
                if recs.last().is_some_and(|r| r.tick > u64::MAX / 2) {
                    return Err("tick numbers out of range".into());
                }
                if let Some(first) = recs.first()
                    && first.tick != self.next_tick() {
                        return Err(format!("tick batch starts at {}, expected {}", first.tick, self.next_tick()));
                    }
                self.ticks.extend(recs);
            }
            ChunkKind::Keyframe => {
                let mut c = Cursor::new(payload);
                let tick = c.u64()?;
                let expected = self.next_tick() - 1;
                if tick != expected {
                    return Err(format!("keyframe for tick {tick} where tick {expected} was expected"));
                }
                self.keyframes.push(Keyframe { tick, offset: offset as u64, payload: range.start + 8..range.end });
            }
            ChunkKind::Index => {
                self.index_offset = Some(offset as u64);
            }
            ChunkKind::End => {
                let mut c = Cursor::new(payload);
                let last = c.u64()?;
                if last != self.next_tick() - 1 {
                    return Err(format!("END says last tick {last}, records end at {}", self.next_tick() - 1));
                }
                self.clean_end = true;
            }
            ChunkKind::Failed => return Err("a FAILED mark where a chunk was expected".into()),
        }
        Ok(())
    }

    /// First and last tick covered (the first keyframe's tick, the last record's).
    #[must_use]
    pub fn range(&self) -> (u64, u64) {
        (self.header.start_tick, self.next_tick() - 1)
    }

    #[must_use]
    pub fn record(&self, tick: u64) -> Option<&TickRecord> {
        let first = self.header.start_tick + 1;
        self.ticks.get(usize::try_from(tick.checked_sub(first)?).ok()?)
    }

    /// The decompressed snapshot bytes of a keyframe.
    pub fn keyframe_snapshot(&self, k: &Keyframe) -> Result<Vec<u8>, ReplayError> {
        decompress(&self.bytes[k.payload.clone()]).map_err(|reason| ReplayError::BadKeyframe { tick: k.tick, reason })
    }

    /// The compressed size of a keyframe.
    #[must_use]
    pub fn keyframe_compressed_len(&self, k: &Keyframe) -> usize {
        k.payload.len()
    }

    /// The latest keyframe at or before `tick`.
    #[must_use]
    pub fn keyframe_at_or_before(&self, tick: u64) -> Option<&Keyframe> {
        self.keyframes.iter().rev().find(|k| k.tick <= tick)
    }

    pub fn restore_keyframe(&self, k: &Keyframe) -> Result<World, ReplayError> {
        let snap = self.keyframe_snapshot(k)?;
        World::restore(&snap).map_err(|e| ReplayError::BadKeyframe { tick: k.tick, reason: e.to_string() })
    }

    /// The world after `tick`, re-simulated from the nearest keyframe with
    /// the recorded plans.
    /// Calls `each` with the world after every tick `from ..= to`, in one
    /// re-simulation pass (stops at the first error `each` returns).
    pub fn states<E: From<ReplayError>>(&self, from: u64, to: u64, mut each: impl FnMut(&World) -> Result<(), E>) -> Result<(), E> {
        let (_, last) = self.range();
        if to > last {
            return Err(ReplayError::TickOutOfRange { tick: to, first: from, last }.into());
        }
        let mut w = self.state_at(from)?;
        each(&w)?;
        while w.tick().0 < to {
            let t = w.tick().0 + 1;
            let plans = self.record(t).map(|r| crate::decode_plans(&r.plans)).unwrap_or_default();
            w.step(&plans, &mut sim_core::NoClock);
            each(&w)?;
        }
        Ok(())
    }

    pub fn state_at(&self, tick: u64) -> Result<World, ReplayError> {
        let (first, last) = self.range();
        if tick < first || tick > last {
            return Err(ReplayError::TickOutOfRange { tick, first, last });
        }
        let k = self.keyframe_at_or_before(tick).ok_or(ReplayError::NoKeyframe)?;
        let mut w = self.restore_keyframe(k)?;
        if w.tick().0 != k.tick {
            return Err(ReplayError::BadKeyframe { tick: k.tick, reason: format!("snapshot holds tick {}", w.tick()) });
        }
        while w.tick().0 < tick {
            let t = w.tick().0 + 1;
            let plans = self.record(t).map(|r| crate::decode_plans(&r.plans)).unwrap_or_default();
            w.step(&plans, &mut sim_core::NoClock);
        }
        Ok(w)
    }
}
