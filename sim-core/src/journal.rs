//! Per-tick journals and the injected clock.
//!
//! sim-core reads no clock: the caller passes one in, and the journal records
//! how long each phase took by it. Tests pass [`NoClock`] (all zeros); the
//! server passes a monotonic clock. Durations are never hashed.

use crate::ids::{Archetype, Handle, SourceId, Tick};
use crate::ports::Status;

/// Version of the journal layout (bumped when fields change meaning).
pub const JOURNAL_SCHEMA_VERSION: u32 = 1;

/// A monotonic nanosecond clock supplied by the caller.
pub trait Clock {
    fn now_ns(&mut self) -> u64;
}

/// A clock that always reads zero: journals get no timings, nothing else
/// changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClock;

impl Clock for NoClock {
    fn now_ns(&mut self) -> u64 {
        0
    }
}

/// The tick pipeline's phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Ingest = 0,
    Apply = 1,
    Physics = 2,
    Sync = 3,
    Rules = 4,
    Hash = 5,
    Journal = 6,
}

impl Phase {
    pub const ALL: [Phase; 7] =
        [Phase::Ingest, Phase::Apply, Phase::Physics, Phase::Sync, Phase::Rules, Phase::Hash, Phase::Journal];

    #[must_use]
    pub fn name(self) -> &'static str {
        ["ingest", "apply", "physics", "sync", "rules", "hash", "journal"][self as usize]
    }
}

/// Counters for one tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub bodies_per_archetype: [u32; Archetype::COUNT],
    pub active_bodies: u32,
    pub contact_pairs: u32,
    pub plans_received: u32,
    pub plans_applied: u32,
    pub plans_rejected: u32,
    pub ops_applied: u32,
    pub spawned: u32,
    pub despawned: u32,
    pub despawned_out_of_bounds: u32,
    pub out_of_bounds_damage: u32,
    pub npc_retargets: u32,
}

/// The outcome of one plan at one tick (the IDL's `journal.plan`).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanJournal {
    pub source: SourceId,
    pub sequence: u32,
    pub correlation: u64,
    pub status: Status,
    /// Rejected ops as two columns: op index and code (at most
    /// `MAX_REJECTIONS_LISTED` listed; the status is the first one's code).
    pub rejected_index: Vec<u32>,
    pub rejected_code: Vec<Status>,
    /// Handles created by spawn ops, in op order.
    pub spawned: Vec<Handle>,
    /// Per raycast: 0 = no hit, 1 = entity, 2 = static geometry.
    pub ray_hit: Vec<u32>,
    pub ray_handle: Vec<u64>,
    pub ray_distance: Vec<f32>,
    /// CSR offsets (queries + 1) into `overlap_handles`.
    pub overlap_offsets: Vec<u32>,
    pub overlap_handles: Vec<u64>,
}

/// At most this many rejected ops are listed per plan.
pub const MAX_REJECTIONS_LISTED: usize = 1024;

impl PlanJournal {
    #[must_use]
    pub fn new(source: SourceId, sequence: u32, correlation: u64) -> PlanJournal {
        PlanJournal {
            source,
            sequence,
            correlation,
            status: Status::Ok,
            rejected_index: Vec::new(),
            rejected_code: Vec::new(),
            spawned: Vec::new(),
            ray_hit: Vec::new(),
            ray_handle: Vec::new(),
            ray_distance: Vec::new(),
            overlap_offsets: Vec::new(),
            overlap_handles: Vec::new(),
        }
    }

    pub(crate) fn reject(&mut self, index: u32, code: Status) {
        if self.status == Status::Ok {
            self.status = code;
        }
        if self.rejected_index.len() < MAX_REJECTIONS_LISTED {
            self.rejected_index.push(index);
            self.rejected_code.push(code);
        }
    }
}

/// What happened in one tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TickJournal {
    pub schema_version: u32,
    pub tick: Tick,
    /// Nanoseconds per phase by the injected clock, indexed by `Phase`.
    pub phase_ns: [u64; 7],
    pub counters: Counters,
    pub world_hash: u64,
    /// One entry per plan received, in application order.
    pub plans: Vec<PlanJournal>,
    /// One entry per behaviour graph that ran, in ascending graph hash.
    pub graphs: Vec<GraphRun>,
}

/// One behaviour graph's run in one tick (the IDL's `journal.graph`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphRun {
    /// The graph's hash.
    pub graph: u64,
    /// Entities it drove.
    pub npcs: u32,
    pub ops_emitted: u32,
    pub ops_rejected: u32,
    /// Execution time by the injected clock: gathering its inputs, the
    /// kernel, and its share of the neighbour grid's build (never hashed).
    pub exec_ns: u64,
}

impl TickJournal {
    pub(crate) fn reset(&mut self, tick: Tick) {
        self.schema_version = JOURNAL_SCHEMA_VERSION;
        self.tick = tick;
        self.phase_ns = [0; 7];
        self.counters = Counters::default();
        self.world_hash = 0;
        self.plans.clear();
        self.graphs.clear();
    }

    /// Total nanoseconds across phases.
    #[must_use]
    pub fn total_ns(&self) -> u64 {
        self.phase_ns.iter().sum()
    }
}
