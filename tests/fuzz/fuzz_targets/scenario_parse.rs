//! Parse arbitrary scenario text: errors, never panics; a valid scenario
//! (small enough) builds a world that can step.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sim_core::{NoClock, Scenario, World};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(s) = Scenario::parse(text, "fuzz.toml") {
        if s.body_count() <= 64 {
            let mut w = World::from_scenario(&s, None);
            w.step(&[], &mut NoClock);
        }
    }
});
