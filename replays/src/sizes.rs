//! What a replay costs on disk: keyframe sizes, bytes per tick and per hour
//! (`replay info` and `bench record` report these, one computation).

use crate::reader::Replay;

/// The sizes of one replay file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sizes {
    /// Ticks the file covers (last - first).
    pub ticks: u64,
    /// Each keyframe's compressed payload, in file order.
    pub keyframe_bytes: Vec<usize>,
    /// Their mean (0 when there is none).
    pub keyframe_bytes_mean: usize,
    pub file_bytes: u64,
    pub bytes_per_tick: f64,
    /// Tick records, chunk framing and header, without keyframe payloads.
    pub bytes_per_tick_without_keyframes: f64,
    /// `bytes_per_tick` at the header's tick rate for an hour.
    pub bytes_per_hour: f64,
}

/// The sizes of `r`.
#[must_use]
pub fn sizes(r: &Replay) -> Sizes {
    let (first, last) = r.range();
    let ticks = last - first;
    let keyframe_bytes: Vec<usize> = r.keyframes.iter().map(|k| r.keyframe_compressed_len(k)).collect();
    let total: usize = keyframe_bytes.iter().sum();
    let per_tick = |bytes: f64| if ticks == 0 { 0.0 } else { bytes / ticks as f64 };
    Sizes {
        ticks,
        keyframe_bytes_mean: total.checked_div(keyframe_bytes.len()).unwrap_or(0),
        keyframe_bytes,
        file_bytes: r.file_bytes,
        bytes_per_tick: per_tick(r.file_bytes as f64),
        bytes_per_tick_without_keyframes: per_tick(r.file_bytes as f64 - total as f64),
        bytes_per_hour: per_tick(r.file_bytes as f64) * f64::from(r.header.tick_rate) * 3600.0,
    }
}
