//! # replays: record every tick, re-simulate, and hunt divergences
//!
//! A replay is a header plus append-only checksummed chunks (see
//! [`format`]): per-tick records (the plans given to `World::step` and the
//! resulting world and column hashes) batched and zstd-compressed, and a
//! keyframe snapshot every K ticks. [`Recorder`] writes them from a bounded
//! queue on its own thread; [`Replay`] reads them back, recovering every
//! chunk before the first bad one; [`verify`], [`diff`] and [`bisect`] re-run
//! the simulation to find the first divergent tick, column and entity.

pub mod format;
pub mod identity;
pub mod plant;
pub mod reader;
#[cfg(feature = "render")]
pub mod render;
pub mod sizes;
pub mod sources;
pub mod verdict;
pub mod verify;
pub mod writer;

pub use format::{ReplayHeader, TickRecord};
pub use identity::{BuildInfo, OtherBuild};
pub use reader::{Keyframe, Replay, ReplayError, Stop, StopKind};
pub use verdict::Verdict;
pub use verify::{bisect, diff, entity_diffs, verify, BisectReport, DiffReport, Divergence, VerifyOptions, VerifyReport};
pub use writer::{FsyncPolicy, RecordError, RecordOutcome, Recorder, RecorderConfig};

use sim_core::MicroPlan;

/// Decodes recorded plan bytes. A plan that no longer decodes (a corrupt or
/// planted byte) is dropped: re-simulation then diverges at its tick, which
/// is exactly what verification must report.
#[must_use]
pub fn decode_plans(plans: &[Vec<u8>]) -> Vec<MicroPlan> {
    plans.iter().filter_map(|p| MicroPlan::decode(p.clone()).ok()).collect()
}

/// The recording build: crate version and profile.
#[must_use]
pub fn build_id() -> String {
    format!("dualplane {} ({})", env!("CARGO_PKG_VERSION"), if cfg!(debug_assertions) { "debug" } else { "release" })
}
