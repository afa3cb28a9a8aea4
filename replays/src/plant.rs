//! Fault injection for testing the verification tools: rewrite a replay with
//! one planted change, keeping every chunk checksum valid (so the reader
//! accepts it and only re-simulation can notice).

use crate::format::{compress, encode_header, encode_ticks, write_chunk, ChunkKind, TickRecord, TRAILER_MAGIC};
use crate::reader::{Replay, ReplayError};
use sim_core::{Archetype, ColumnId, World};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plant {
    /// Flip the lowest bit of byte `offset` of plan `plan` recorded at `tick`.
    PlanByte { tick: u64, plan: usize, offset: usize },
    /// Flip the lowest bit of one recorded column hash at `tick`.
    ColumnHash { tick: u64, archetype: Archetype, column: ColumnId },
    /// Flip the lowest mantissa bit of one f32 in the keyframe at `tick`.
    KeyframeF32 { tick: u64, archetype: Archetype, column: ColumnId, row: usize },
}

/// Writes `r` to `out` with `plant` applied.
pub fn plant(r: &Replay, plant: &Plant, out: &Path) -> Result<(), ReplayError> {
    let mut records: Vec<TickRecord> = r.ticks.clone();
    let mut keyframes: Vec<(u64, Vec<u8>)> = Vec::new();
    for k in &r.keyframes {
        keyframes.push((k.tick, r.keyframe_snapshot(k)?));
    }
    let (first, last) = r.range();
    let ticks = || format!("ticks {}..={last}", first + 1);
    let err = |what: String| ReplayError::Other(format!("plant: {what}"));
    match *plant {
        Plant::PlanByte { tick, plan, offset } => {
            let rec = records.iter_mut().find(|x| x.tick == tick).ok_or_else(|| err(format!("tick {tick} is not recorded (valid: {})", ticks())))?;
            let n = rec.plans.len();
            let p = rec.plans.get_mut(plan).ok_or_else(|| err(format!("tick {tick} has {n} plans (valid: 0..{n}), not plan {plan}")))?;
            let len = p.len();
            *p.get_mut(offset).ok_or_else(|| err(format!("plan {plan} of tick {tick} has {len} bytes (valid offsets: 0..{len}), not {offset}")))? ^= 1;
        }
        Plant::ColumnHash { tick, archetype, column } => {
            let rec = records.iter_mut().find(|x| x.tick == tick).ok_or_else(|| err(format!("tick {tick} is not recorded (valid: {})", ticks())))?;
            let valid: Vec<String> = rec.columns.iter().filter(|c| c.archetype == archetype).map(|c| c.column.name().to_string()).collect();
            let c = rec
                .columns
                .iter_mut()
                .find(|c| c.archetype == archetype && c.column == column)
                .ok_or_else(|| err(format!("{} has no column {} at tick {tick} (valid: {})", archetype.name(), column.name(), valid.join(", "))))?;
            c.hash ^= 1;
        }
        Plant::KeyframeF32 { tick, archetype, column, row } => {
            let valid: Vec<String> = keyframes.iter().map(|k| k.0.to_string()).collect();
            let kf = keyframes.iter_mut().find(|k| k.0 == tick).ok_or_else(|| err(format!("no keyframe at tick {tick} (keyframes: {})", valid.join(", "))))?;
            let mut w = World::restore(&kf.1).map_err(|e| ReplayError::Other(e.to_string()))?;
            let table = w.table_mut_for_fault_injection(archetype);
            let rows = table.len();
            let col = table.column_mut(column).ok_or_else(|| err(format!("{} has no column {}", archetype.name(), column.name())))?;
            let bytes = col.bytes_mut();
            *bytes.get_mut(row * 4).ok_or_else(|| err(format!("{} has {rows} rows (valid: 0..{rows}), not row {row}", archetype.name())))? ^= 1;
            kf.1 = w.snapshot().map_err(|e| ReplayError::Other(e.to_string()))?;
        }
    }
    let mut file = encode_header(&r.header);
    let mut kf_iter = keyframes.into_iter().peekable();
    let mut batch: Vec<TickRecord> = Vec::new();
    let mut index = Vec::new();
    let flush = |file: &mut Vec<u8>, batch: &mut Vec<TickRecord>| {
        if !batch.is_empty() {
            write_chunk(file, ChunkKind::Ticks, &compress(&encode_ticks(batch), 3));
            batch.clear();
        }
    };
    let emit_kf = |file: &mut Vec<u8>, tick: u64, snap: &[u8], index: &mut Vec<(u64, u64)>| {
        index.push((tick, file.len() as u64));
        let mut payload = tick.to_le_bytes().to_vec();
        payload.extend_from_slice(&compress(snap, 3));
        write_chunk(file, ChunkKind::Keyframe, &payload);
    };
    while let Some((t, s)) = kf_iter.next_if(|k| k.0 <= r.header.start_tick) {
        emit_kf(&mut file, t, &s, &mut index);
    }
    for rec in records {
        let t = rec.tick;
        batch.push(rec);
        if batch.len() >= 30 {
            flush(&mut file, &mut batch);
        }
        while let Some((kt, s)) = kf_iter.next_if(|k| k.0 == t) {
            flush(&mut file, &mut batch);
            emit_kf(&mut file, kt, &s, &mut index);
        }
    }
    flush(&mut file, &mut batch);
    let mut idx = (index.len() as u32).to_le_bytes().to_vec();
    for (t, o) in &index {
        idx.extend_from_slice(&t.to_le_bytes());
        idx.extend_from_slice(&o.to_le_bytes());
    }
    let index_at = file.len() as u64;
    write_chunk(&mut file, ChunkKind::Index, &idx);
    write_chunk(&mut file, ChunkKind::End, &r.range().1.to_le_bytes());
    file.extend_from_slice(&TRAILER_MAGIC);
    file.extend_from_slice(&index_at.to_le_bytes());
    std::fs::write(out, file).map_err(|e| ReplayError::Io(out.display().to_string(), e))
}
