//! The replay file format (version 2).
//!
//! ```text
//! file    := header chunk* [trailer]
//! header  := "DPREPLAY" u32 format_version u32 json_len u64 xxh3(json) json
//! chunk   := u8 kind, 3 x u8 reserved (0), u32 payload_len,
//!            u64 xxh3(kind byte ++ payload), payload
//! trailer := "DPRIDX\0\0" u64 offset_of_index_chunk      (clean close only)
//! ```
//! Chunk kinds: TICKS (a zstd-compressed batch of consecutive tick records),
//! KEYFRAME (a zstd-compressed world snapshot after tick T), INDEX (keyframe
//! ticks and file offsets), END (clean close), FAILED (the recorder gave up:
//! a write failed, e.g. a full disk; payload: the reason, UTF-8). Everything
//! little-endian. Reserved bytes are zero. Chunks are append-only; a reader
//! recovers every chunk before the first invalid one, and tells a truncated
//! tail (a crash: the file just ends) from corruption (a bad chunk with
//! bytes after it, or anything wrong in a cleanly closed file).

use serde::{Deserialize, Serialize};
use sim_core::{Archetype, ColumnHash, ColumnId};

pub const MAGIC: [u8; 8] = *b"DPREPLAY";
pub const FORMAT_VERSION: u32 = 2;
/// Tick records keep each column hash's low 16 bits (format 2): the full
/// 64-bit world hash, which covers every column hash, detects a divergence;
/// the column hashes only say where it is, and 16 bits do that for a
/// fraction of the bytes (full ones were 34 MB of an hour's replay).
pub const COLUMN_HASH_BITS: u32 = 16;

/// A column hash as tick records keep it.
#[must_use]
pub fn short_hash(h: u64) -> u64 {
    h & ((1 << COLUMN_HASH_BITS) - 1)
}
pub const TRAILER_MAGIC: [u8; 8] = *b"DPRIDX\0\0";
pub const CHUNK_HEADER: usize = 16;
/// No chunk payload (compressed) may exceed this.
pub const MAX_CHUNK: usize = 256 << 20;
/// No decompressed payload may exceed this.
pub const MAX_RAW: usize = 1 << 30;
/// The JSON header may not exceed this.
pub const MAX_HEADER_JSON: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkKind {
    Ticks = 1,
    Keyframe = 2,
    Index = 3,
    End = 4,
    Failed = 5,
}

impl ChunkKind {
    #[must_use]
    pub fn from_u8(v: u8) -> Option<ChunkKind> {
        match v {
            1 => Some(ChunkKind::Ticks),
            2 => Some(ChunkKind::Keyframe),
            3 => Some(ChunkKind::Index),
            4 => Some(ChunkKind::End),
            5 => Some(ChunkKind::Failed),
            _ => None,
        }
    }
}

/// What a replay was recorded with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayHeader {
    pub format_version: u32,
    pub ports_semver: String,
    pub ports_schema_hash: u64,
    pub scenario_name: String,
    pub scenario_hash: u64,
    pub seed: u64,
    pub tick_rate: u32,
    /// Crate version and profile of the recording build.
    pub build: String,
    /// Commit, toolchain, target, rapier version and threads of the
    /// recording build (see [`crate::identity`]).
    #[serde(default)]
    pub build_info: crate::identity::BuildInfo,
    pub keyframe_every: u64,
    /// The tick of the first keyframe (the recording starts after it).
    pub start_tick: u64,
}

/// One recorded tick: the plans passed to `World::step` (bytes, in the
/// order given) and the resulting hashes (column hashes as
/// [`short_hash`] once read back from a file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TickRecord {
    pub tick: u64,
    pub world_hash: u64,
    pub plans: Vec<Vec<u8>>,
    pub columns: Vec<ColumnHash>,
}

pub fn checksum(kind: u8, payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&[kind]);
    h.update(payload);
    h.digest()
}

/// Appends one chunk.
pub fn write_chunk(out: &mut Vec<u8>, kind: ChunkKind, payload: &[u8]) {
    out.push(kind as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(kind as u8, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

pub fn encode_header(h: &ReplayHeader) -> Vec<u8> {
    let json = serde_json::to_vec(h).unwrap_or_default();
    let mut out = Vec::with_capacity(24 + json.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Serializes a batch of consecutive tick records (uncompressed).
pub fn encode_ticks(records: &[TickRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    let first = records.first().map_or(0, |r| r.tick);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.world_hash.to_le_bytes());
        out.extend_from_slice(&(r.plans.len() as u32).to_le_bytes());
        for p in &r.plans {
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
        }
        out.extend_from_slice(&(r.columns.len() as u16).to_le_bytes());
        for c in &r.columns {
            out.push(c.archetype as u8);
            out.extend_from_slice(&(c.column as u16).to_le_bytes());
            out.extend_from_slice(&c.rows.to_le_bytes());
            out.extend_from_slice(&(short_hash(c.hash) as u16).to_le_bytes());
        }
    }
    out
}

/// A bounds-checked little-endian cursor.
pub(crate) struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            format!("needs {n} bytes at offset {}, {} left", self.pos, self.buf.len().saturating_sub(self.pos))
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

/// Parses a batch of tick records; every count is checked against the
/// bytes actually present before anything is allocated.
pub fn decode_ticks(raw: &[u8]) -> Result<Vec<TickRecord>, String> {
    let mut c = Cursor::new(raw);
    let first = c.u64()?;
    let n = c.u32()? as usize;
    // Each record is at least 8 + 4 + 2 bytes.
    if n > raw.len() / 14 + 1 {
        return Err(format!("{n} tick records cannot fit in {} bytes", raw.len()));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let world_hash = c.u64()?;
        let np = c.u32()? as usize;
        if np > raw.len() / 4 {
            return Err(format!("record {i}: {np} plans cannot fit"));
        }
        let mut plans = Vec::with_capacity(np);
        for _ in 0..np {
            let len = c.u32()? as usize;
            plans.push(c.take(len)?.to_vec());
        }
        let nc = usize::from(c.u16()?);
        let mut columns = Vec::with_capacity(nc.min(raw.len() / 9 + 1));
        for _ in 0..nc {
            let a = c.u8()?;
            let col = c.u16()?;
            let rows = c.u32()?;
            let hash = u64::from(c.u16()?);
            let archetype = Archetype::from_u8(a).ok_or_else(|| format!("record {i}: archetype {a}"))?;
            let column = ColumnId::from_u16(col).ok_or_else(|| format!("record {i}: column id {col}"))?;
            columns.push(ColumnHash { archetype, column, rows, hash });
        }
        let tick = first.checked_add(i as u64).ok_or("tick overflows")?;
        out.push(TickRecord { tick, world_hash, plans, columns });
    }
    if !c.is_empty() {
        return Err(format!("{} trailing bytes after {n} records", raw.len() - c.pos));
    }
    Ok(out)
}

/// zstd with the raw length in front (so decompression is bounded).
pub fn compress(raw: &[u8], level: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 2 + 16);
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    match zstd::bulk::compress(raw, level) {
        Ok(z) => out.extend_from_slice(&z),
        Err(_) => unreachable!("zstd compression of an in-memory buffer does not fail"),
    }
    out
}

pub fn decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut c = Cursor::new(payload);
    let raw_len = c.u64()? as usize;
    if raw_len > MAX_RAW {
        return Err(format!("declared raw length {raw_len} exceeds {MAX_RAW}"));
    }
    let out = zstd::bulk::decompress(&payload[8..], raw_len).map_err(|e| format!("zstd: {e}"))?;
    if out.len() != raw_len {
        return Err(format!("decompressed {} bytes, header said {raw_len}", out.len()));
    }
    Ok(out)
}
