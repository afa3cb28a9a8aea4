//! What a verification concludes, as one word and one exit code a pipeline
//! can trust: 0 only when everything the file holds was verified.

use crate::reader::{ReplayError, Stop, StopKind};
use serde::Serialize;

/// The outcome of `replay verify`, most serious first when several apply:
/// a divergence found in the readable part outranks damage after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole file was read and every tick re-simulated identically.
    Verified,
    /// The file ends early (a crash or a failed recording) and
    /// `--allow-truncated` was given: the part it holds verified.
    VerifiedPrefix,
    /// Re-simulation differs from the recording.
    Divergence,
    /// A damaged chunk (bytes follow it) or header: the file was altered.
    Corrupt,
    /// The file ends early: a crash's cut, or the recorder marked it failed.
    Truncated,
    /// Recorded by another build; refused (`--allow-other-build` overrides).
    OtherBuild,
}

/// Exit codes, as documented in `dualplane replay verify --help`.
pub const EXIT_VERIFIED: u8 = 0;
pub const EXIT_DIVERGENCE: u8 = 1;
/// Usage and IO errors (clap's and the CLI's own).
pub const EXIT_ERROR: u8 = 2;
pub const EXIT_CORRUPT: u8 = 3;
pub const EXIT_TRUNCATED: u8 = 4;
pub const EXIT_OTHER_BUILD: u8 = 5;

impl Verdict {
    #[must_use]
    pub const fn exit_code(self) -> u8 {
        match self {
            Verdict::Verified | Verdict::VerifiedPrefix => EXIT_VERIFIED,
            Verdict::Divergence => EXIT_DIVERGENCE,
            Verdict::Corrupt => EXIT_CORRUPT,
            Verdict::Truncated => EXIT_TRUNCATED,
            Verdict::OtherBuild => EXIT_OTHER_BUILD,
        }
    }

    /// From what re-simulation found and where reading stopped.
    #[must_use]
    pub fn of(diverged: bool, stop: Option<&Stop>, allow_truncated: bool) -> Verdict {
        match (diverged, stop.map(|s| s.kind)) {
            (true, _) => Verdict::Divergence,
            (false, None) => Verdict::Verified,
            (false, Some(StopKind::Corrupt)) => Verdict::Corrupt,
            (false, Some(StopKind::Truncated | StopKind::Failed)) if allow_truncated => Verdict::VerifiedPrefix,
            (false, Some(StopKind::Truncated | StopKind::Failed)) => Verdict::Truncated,
        }
    }

    /// The verdict an error stands for, when it is about the file's bytes
    /// (a bad header or keyframe); `None` for errors of another kind (IO).
    #[must_use]
    pub fn of_error(e: &ReplayError) -> Option<Verdict> {
        match e {
            ReplayError::NotAReplay(_) | ReplayError::Version { .. } | ReplayError::Header(_) | ReplayError::BadKeyframe { .. } | ReplayError::NoKeyframe => Some(Verdict::Corrupt),
            ReplayError::Io(..) | ReplayError::TickOutOfRange { .. } | ReplayError::Other(_) => None,
        }
    }
}
