//! Behaviour graph bytes as a plan's graph_upload carries them: the decoder
//! and validator refuse with a named status, never panic; what decodes
//! re-encodes to the same bytes, and the interpreter and the compiled
//! kernel agree bit for bit on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sim_core::graph::{interpret, Graph, Inputs, Kernel, Sensors};

/// Deterministic stand-in sensors.
struct Fake;

impl Sensors for Fake {
    fn ray(&mut self, o: [f32; 3], d: [f32; 3], max: f32) -> f32 {
        let t = o[0] * d[0] + o[2] * d[2];
        if t > 0.0 && t < max { t } else { f32::INFINITY }
    }
    fn push(&mut self, npc: usize, radius: f32, mask: u16) -> [f32; 3] {
        [npc as f32 - radius, f32::from(mask), 0.5]
    }
    fn nearest(&mut self, npc: usize, radius: f32, _: u16) -> [f32; 3] {
        [radius, -(npc as f32), 1.0]
    }
    fn count(&mut self, npc: usize, _: f32, mask: u16) -> f32 {
        ((npc + mask as usize) % 3) as f32
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Again with the checksum made right, so mutations reach the validator.
    if data.len() >= 32 {
        let mut d = data.to_vec();
        d[24..32].fill(0);
        let sum = xxhash_rust::xxh3::xxh3_64(&d);
        d[24..32].copy_from_slice(&sum.to_le_bytes());
        check(&d);
    }
});

fn check(data: &[u8]) {
    let Ok(g) = Graph::decode(data) else { return };
    assert_eq!(g.encode(), data, "what decodes re-encodes to the same bytes");
    let pos = [[1.0, 0.5, -2.0], [f32::NAN, 0.0, 3.0], [1e30, -1e-30, 0.0]];
    let vel = [[0.0; 3], [1.0, 2.0, 3.0], [-0.0, f32::INFINITY, 1.0]];
    let health = [100.0, 0.0, -5.0];
    let state = vec![[0.25, -0.5, 2.0]; 3 * g.state_count as usize];
    let inp = Inputs { tick: 1234, pos: &pos, vel: &vel, health: &health, target: &pos, state: &state };
    let a = interpret(&g, &inp, &mut Fake);
    let b = Kernel::compile(&g).run(&inp, &mut Fake);
    assert!(a.same_bits(&b), "interpreter and kernel disagree");
}
