//! The build a replay was recorded by, and whether this build may verify it.
//!
//! A replay re-simulates only on the build that made it: another commit, a
//! different rustc, target or rapier3d version, or another ports schema can
//! change the arithmetic, and then a verification reports a false desync (or
//! fails late on a keyframe it cannot restore). So the header records the
//! build, and `verify` refuses another one unless asked not to. The profile
//! and the thread count are recorded but do not make another build: debug
//! and release, and every thread count, give identical hashes (tested).

use serde::{Deserialize, Serialize};

/// What built the recorder. Absent (all empty) in replays from before the
/// field existed: those are another build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildInfo {
    pub commit: String,
    pub rustc: String,
    pub target: String,
    pub rapier: String,
    pub profile: String,
    /// Simulation threads of the recording (informational).
    pub threads: usize,
}

impl BuildInfo {
    /// This build, recording with `threads` simulation threads.
    #[must_use]
    pub fn current(threads: usize) -> BuildInfo {
        BuildInfo {
            commit: env!("DUALPLANE_BUILD_COMMIT").to_string(),
            rustc: env!("DUALPLANE_BUILD_RUSTC").to_string(),
            target: env!("DUALPLANE_BUILD_TARGET").to_string(),
            rapier: env!("DUALPLANE_BUILD_RAPIER").to_string(),
            profile: if cfg!(debug_assertions) { "debug" } else { "release" }.to_string(),
            threads,
        }
    }

    /// The parts that decide the simulation's arithmetic, as text.
    #[must_use]
    pub fn identity(&self, ports_schema_hash: u64) -> String {
        let or = |s: &str| if s.is_empty() { "unknown".to_string() } else { s.to_string() };
        format!("commit {} / {} / {} / rapier3d {} / ports {ports_schema_hash:#018x}", or(&self.commit), or(&self.rustc), or(&self.target), or(&self.rapier))
    }
}

/// The recording build differs from this one: both, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OtherBuild {
    pub recorded: String,
    pub this_build: String,
}

impl std::fmt::Display for OtherBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "recorded by {}; this is {}", self.recorded, self.this_build)
    }
}

/// `None` when `header` was recorded by this build (up to profile and
/// thread count), else both builds.
#[must_use]
pub fn other_build(header: &crate::ReplayHeader) -> Option<OtherBuild> {
    let recorded = header.build_info.identity(header.ports_schema_hash);
    let this_build = BuildInfo::current(0).identity(sim_core::PORTS_SCHEMA_HASH);
    (recorded != this_build).then_some(OtherBuild { recorded, this_build })
}
