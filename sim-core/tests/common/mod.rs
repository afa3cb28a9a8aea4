#![allow(dead_code)]
use sim_core::{Scenario, World};
use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn small() -> Scenario {
    Scenario::load(&repo_root().join("tests/scenarios/small.toml")).expect("small scenario")
}

pub fn small_world() -> World {
    World::from_scenario(&small(), None)
}
