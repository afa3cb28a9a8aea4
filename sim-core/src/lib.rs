//! # sim-core: the sealed deterministic core of dualplane
//!
//! A fixed-step world of archetype tables of SoA columns, stepped by rapier3d
//! (`enhanced-determinism`, single-threaded), hashed with xxh3 every tick,
//! snapshotted to bytes and restored bit-identically. sans-IO: no clock
//! (the caller injects one), no threads, no sockets, no OS entropy.
//!
//! ```
//! use sim_core::{NoClock, Scenario, World};
//! let scenario = Scenario::parse(r#"
//!     name = "doc"
//!     [arena]
//!     half_extents = [5.0, 5.0]
//!     [[shapes]]
//!     name = "ball"
//!     kind = "ball"
//!     radius = 0.5
//!     [[bodies]]
//!     shape = "ball"
//!     position = [0.0, 3.0, 0.0]
//! "#, "doc.toml").unwrap();
//! let mut a = World::from_scenario(&scenario, None);
//! let mut b = World::from_scenario(&scenario, None);
//! for _ in 0..60 {
//!     let ha = a.step(&[], &mut NoClock).world_hash;
//!     let hb = b.step(&[], &mut NoClock).world_hash;
//!     assert_eq!(ha, hb);
//! }
//! let snap = a.snapshot().unwrap();
//! let mut c = World::restore(&snap).unwrap();
//! assert_eq!(a.step(&[], &mut NoClock).world_hash, c.step(&[], &mut NoClock).world_hash);
//! ```

#[cfg(target_endian = "big")]
compile_error!("sim-core hashes column bytes in native order and assumes little-endian targets");

pub mod hash;
pub mod character;
pub mod avatars;
pub mod cost;
pub mod graph;
pub mod ids;
pub mod journal;
pub mod lagcomp;
pub mod microplan;
pub mod physics;
pub mod plan;
pub mod ports;
pub mod rng;
pub mod scenario;
pub mod schema;
pub mod snapshot;
pub mod table;
pub mod world;

pub use hash::{ColumnHash, WorldHashes};
pub use ids::{Archetype, Handle, SourceId, Tick};
pub use journal::{Clock, Counters, NoClock, Phase, PlanJournal, TickJournal, JOURNAL_SCHEMA_VERSION};

/// Whether rapier's parallel step is compiled in (feature `parallel`): a
/// step then splits across the rayon pool it is called in, and blocks the
/// calling worker on part of itself queued there. Callers that step many
/// worlds at once on one pool must step each inside a pool of one thread.
pub const PARALLEL_PHYSICS: bool = cfg!(feature = "parallel");

/// Threads of the rayon pool the caller runs in; 1 outside any pool (work
/// split across it never reaches rayon's global pool: sim-core starts no
/// threads).
pub(crate) fn caller_threads() -> usize {
    if rayon::current_thread_index().is_some() { rayon::current_num_threads() } else { 1 }
}
pub use microplan::{DecodeError, MicroPlan, Op, PlanBuilder, PlanHeader};
pub use physics::{PhysicsPort, RapierPhysics};
pub use plan::PlanQueue;
pub use ports::{OpKind, Status, PORTS_SCHEMA_HASH, PORTS_SEMVER};
pub use scenario::{Scenario, ScenarioError, DEFAULT_SCENARIO};
pub use schema::{ColumnId, ColumnType};
pub use snapshot::{Capture, SnapshotError};
pub use table::{ColumnData, Table};
pub use world::{World, WorldConfig};
