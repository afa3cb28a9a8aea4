//! The ray sensor's grid (`World::ray_distances`, what graphs' `ray` nodes
//! read) against its definition: every collider tested, the least hit
//! under `max`, bit for bit; and against rapier's own `cast_ray`, which
//! hits the same colliders but can differ by an ulp (its BVH passes each
//! leaf the best hit so far as the limit, and parry's answer moves with it).

mod common;

use common::repo_root;
use rapier3d::prelude::*;
use sim_core::physics::PhysicsPort;
use sim_core::{NoClock, Scenario, World};

/// Every enabled collider, the least `cast_ray` (solid) under `max`, with
/// `d` normalised as the sensor does it.
fn brute(w: &World, o: [f32; 3], d: [f32; 3], max: f32) -> f32 {
    let len = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    let d = [d[0] / len, d[1] / len, d[2] / len];
    let ray = Ray::new(Vector::new(o[0], o[1], o[2]), Vector::new(d[0], d[1], d[2]));
    let best = w.physics().rapier().colliders.iter().filter(|(_, co)| co.is_enabled()).filter_map(|(_, co)| co.shape().cast_ray(co.position(), &ray, max, true)).fold(f32::INFINITY, f32::min);
    if best < max { best } else { f32::INFINITY }
}

/// A small deterministic generator (xorshift), uniform in [lo, hi).
struct Gen(u64);

impl Gen {
    fn next(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (hi - lo) * ((self.0 >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// Where a cluster of colliders goes, far off the pile (outside the cut
/// grid box).
const FAR: [f32; 3] = [600.0, 0.0, 450.0];

#[test]
fn grid_rays_equal_every_collider_tested_and_rapier() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("pool");
    // The default pile (crates, balls, pills tumbling) among 1,000 NPCs.
    let s = Scenario::load(&repo_root().join("tests/scenarios/npc1000.toml")).expect("npc1000 scenario");
    let mut w = World::from_scenario(&s, None);
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut checked = 0;
    let mut hits = 0;
    let mut exact = 0;
    let mut far_hits = 0;
    for round in 0..5 {
        if round == 2 {
            // A cluster of colliders far off cuts the grid's box of cells
            // (about 360 x 360 around the pile): from now on they all clamp
            // onto its corner cell, which rays around them look up.
            for k in 0..12 {
                let (x, z) = ((k % 4) as f32 * 1.5, (k / 4) as f32 * 1.5);
                w.physics_mut().add_fixed_box([FAR[0] + x, 0.5 + (k % 3) as f32 * 0.5, FAR[2] + z], [0.5, 0.5, 0.5], 0.5);
            }
        }
        for _ in 0..30 {
            w.step(&[], &mut NoClock);
        }
        let mut rays = Vec::new();
        for k in 0..2000 {
            let mut o = [g.next(-40.0, 40.0), g.next(-0.5, 6.0), g.next(-40.0, 40.0)];
            let mut d = [g.next(-1.0, 1.0), g.next(-0.6, 0.6), g.next(-1.0, 1.0)];
            match k % 10 {
                0 => d = [0.0, -1.0, 0.0],          // straight down: one cell
                1 => d[1] = 0.0,                    // level, like the utility graph's
                2 => d = [d[0], 0.0, 0.0],          // along an axis
                3 => {
                    // From a cell corner along a cell boundary.
                    o = [o[0].round(), o[1], o[2].round()];
                    d = [0.0, 0.0, d[2]];
                }
                4 => o = [o[0].round(), o[1], o[2].round()],
                _ => {}
            }
            if round >= 2 && k % 4 == 0 {
                // Among the far cluster, outside the box.
                o = [FAR[0] + g.next(-8.0, 12.0), g.next(0.0, 2.0), FAR[2] + g.next(-8.0, 12.0)];
            }
            let len = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            if len > 1e-3 {
                rays.push((o, [d[0] / len, d[1] / len, d[2] / len]));
            }
        }
        // Graph-length rays walk the grid; longer ones (and no limit at
        // all) test every collider.
        let max = [3.0, 25.0, 100.0, 1000.0, f32::INFINITY][round];
        let got = w.ray_distances(&rays, max);
        // The grid built across a pool (its boxes in parallel parts) answers the same.
        let pooled = pool.install(|| w.ray_distances(&rays, max));
        assert_eq!(got.iter().map(|t| t.to_bits()).collect::<Vec<_>>(), pooled.iter().map(|t| t.to_bits()).collect::<Vec<_>>());
        for (&(o, d), &t) in rays.iter().zip(&got) {
            let want = brute(&w, o, d, max);
            assert_eq!(t.to_bits(), want.to_bits(), "ray {o:?} {d:?} max {max}: grid {t}, every collider {want}");
            let len = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            let rapier = w.physics().raycast(o, [d[0] / len, d[1] / len, d[2] / len], max).map_or(f32::INFINITY, |(_, t)| t);
            assert!(t == rapier || (t - rapier).abs() <= 1e-5 * t.max(1.0), "ray {o:?} {d:?} max {max}: grid {t}, rapier {rapier}");
            exact += usize::from(t.to_bits() == rapier.to_bits());
            checked += 1;
            hits += usize::from(t.is_finite());
            far_hits += usize::from(t.is_finite() && o[0] > FAR[0] - 100.0);
        }
    }
    assert!(hits > checked / 10 && hits < checked, "a mix of hits and misses: {hits} of {checked}");
    assert!(far_hits > 20, "rays hit the far cluster (clamped cells): {far_hits}");
    eprintln!("{checked} rays, {hits} hits; bit-equal to rapier: {exact}");
}
