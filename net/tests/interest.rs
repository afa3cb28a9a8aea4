//! Interest management on the real world: the default arena's pile and
//! NPCs plus one crate far out in a corner, two server sessions (one
//! controlling a crate inside the pile, one the far crate) encoding against
//! one interest grid per tick, and two sans-IO clients that decode every
//! snapshot and check every view hash.

use net::client::ClientSession;
use net::interest::{InterestGrid, InterestRadii};
use net::quant::quantize_world;
use net::session::{CoreConfig, ServerSession};
use net::token::Role;
use sim_core::{Archetype, NoClock, Scenario, World};
use std::collections::BTreeSet;

struct Run {
    bytes: [u64; 2],
    applied: [u64; 2],
    hash_failures: u32,
    /// Handles that entered or left the near client's view, summed over ticks.
    near_changes: usize,
    /// The far client's largest view.
    far_max_view: usize,
    /// Snapshots the server sent from nothing (no usable acked baseline).
    resyncs: u64,
}

fn world() -> World {
    let mut s = Scenario::default_arena();
    let text = "[[bodies]]\nshape = \"crate\"\nposition = [27.0, 0.5, 27.0]\n[[bodies]]\nshape = \"crate\"\nposition = [0.0, 0.5, 0.0]\n";
    let extra = Scenario::parse(&format!("name = \"x\"\n[arena]\nhalf_extents = [30.0, 30.0]\n[[shapes]]\nname = \"crate\"\nkind = \"cuboid\"\nhalf_extents = [0.5, 0.5, 0.5]\n{text}"), "extra").expect("the extra bodies parse");
    s.bodies.extend(extra.bodies);
    World::from_scenario(&s, None)
}

fn run(radii: InterestRadii, ticks: u64, ack_lost: impl Fn(u64) -> bool) -> Run {
    let mut w = world();
    for _ in 0..120 {
        w.step(&[], &mut NoClock);
    }
    // The two added crates are the last props spawned: the far one, then
    // the one under the pile.
    let props = w.table(Archetype::Prop).handles().to_vec();
    let (far, near) = (props[props.len() - 2], props[props.len() - 1]);
    let config = CoreConfig { interest: Some(radii), ..CoreConfig::default() };
    let mut sessions = [near, far].map(|h| ServerSession::new(h as u32, 100 + h as u32, Role::Policy, vec![h], &config, 0));
    let mut clients = [ClientSession::new(), ClientSession::new()];
    let mut last_near: BTreeSet<u64> = BTreeSet::new();
    let (mut near_changes, mut far_max_view) = (0, 0);
    for _ in 0..ticks {
        w.step(&[], &mut NoClock);
        let tick = w.tick().0;
        let now = tick * 1000 / 60;
        let view = quantize_world(&w);
        let grid = InterestGrid::build(&view, radii);
        let hashes = net::quant::entity_hashes(&view);
        for k in 0..2 {
            let bytes = sessions[k].snapshot(now, tick, (&view, &hashes), &[], Some(&grid), &config);
            clients[k].on_datagram(&bytes);
            if let Some(ack) = clients[k].poll_ack()
                && !ack_lost(tick)
            {
                sessions[k].on_datagram(now, tick, &ack).expect("an ack is accepted");
            }
        }
        let (_, v) = clients[0].view().expect("the near client holds a view");
        let now_in: BTreeSet<u64> = v.iter().map(|e| e.handle).collect();
        near_changes += now_in.symmetric_difference(&last_near).count();
        last_near = now_in;
        far_max_view = far_max_view.max(clients[1].view().map_or(0, |(_, v)| v.len()));
    }
    Run {
        bytes: [0, 1].map(|k| clients[k].stats.bytes_received),
        applied: [0, 1].map(|k| clients[k].stats.snapshots_applied),
        hash_failures: clients.iter().map(|c| c.stats.hash_failures).sum(),
        near_changes,
        far_max_view,
        resyncs: sessions.iter().map(|s| s.stats.resyncs).sum(),
    }
}

#[test]
fn far_clients_get_far_fewer_bytes_and_every_view_is_proven() {
    let ticks = 600;
    let r = run(InterestRadii::new(8.0, Some(10.0)).unwrap(), ticks, |_| false);
    println!("bytes near {} far {}, applied {:?}, near view changes {}, far view max {}", r.bytes[0], r.bytes[1], r.applied, r.near_changes, r.far_max_view);
    assert_eq!(r.hash_failures, 0, "every applied view matched the server's hash");
    assert!(r.applied.iter().all(|&a| a >= ticks - 2), "every snapshot applied: {:?}", r.applied);
    assert!(r.bytes[0] > 10 * r.bytes[1], "near {} B vs far {} B", r.bytes[0], r.bytes[1]);
    assert!(r.far_max_view <= 2, "the far crate sees nothing but itself (and at most a stray): {}", r.far_max_view);
    assert!(r.near_changes > 0, "entities entered and left the near view (NPCs pass, the pile shifts)");
}

#[test]
fn hysteresis_cuts_boundary_churn_on_the_real_pile() {
    let ticks = 300;
    let without = run(InterestRadii::new(6.0, Some(6.0)).unwrap(), ticks, |_| false);
    let with = run(InterestRadii::new(6.0, Some(7.5)).unwrap(), ticks, |_| false);
    println!("view changes: leave = enter {}, leave = 1.25 x enter {}", without.near_changes, with.near_changes);
    assert_eq!(without.hash_failures + with.hash_failures, 0);
    assert!(with.near_changes < without.near_changes, "with {} vs without {}", with.near_changes, without.near_changes);
}

#[test]
fn a_client_whose_acks_stop_for_a_second_resyncs_and_proves_its_view_again() {
    // No ack reaches the server for 80 ticks: its acked baseline leaves
    // the ring, so it sends from nothing, with the interest view moving on.
    let lost = |t: u64| (200..280).contains(&t);
    let r = run(InterestRadii::new(8.0, Some(10.0)).expect("radii"), 400, lost);
    println!("resyncs {}, applied {:?}", r.resyncs, r.applied);
    assert_eq!(r.hash_failures, 0);
    assert!(r.resyncs >= 50, "after 32 ticks without acks the baseline left the ring: a resync every tick until acks resume: {}", r.resyncs);
    assert!(r.applied.iter().all(|&a| a >= 390), "{:?}", r.applied);
}
