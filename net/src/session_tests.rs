//! Unit tests of `session.rs` that reach its private state.

use super::*;

fn world(n: u64, tick: u64) -> Vec<QEntity> {
    (1..=n).map(|h| QEntity { handle: h, archetype: 0, shape: 0, pos: [h as i32, tick as i32, 0], rot: 0, vel: [0; 3] }).collect()
}

/// A client that stops acking fills its ring; one ack then frees the
/// lot, and the next encode keeps only `SPARE_VIEWS` of them.
#[test]
fn spare_views_are_capped_after_a_stall() {
    let config = CoreConfig::default();
    let mut s = ServerSession::new(7, 7, Role::Observer, Vec::new(), &config, 0);
    let mut last = 0;
    for tick in 1..=(RING as u64 + 4) {
        let w = world(200, tick);
        let _ = s.snapshot(tick * 16, tick, (&w, &crate::quant::entity_hashes(&w)), &[], None, &config);
        last = s.seq;
    }
    assert_eq!(s.ring.len(), RING, "no acks: the ring is full");
    let ack = Ack { latest: Some(last), hash_failures: 0, received: 0, inputs: Vec::new() }.encode();
    s.on_datagram(1_000, RING as u64 + 4, &ack).expect("a valid ack");
    assert_eq!(s.ring.len(), 1, "only the acked snapshot stays a baseline");
    // The ring's 31 older views, and the one an eviction left.
    assert_eq!(s.free_views.len(), RING, "freed views wait for reuse");
    let w = world(200, 99);
    let _ = s.snapshot(1_016, 99, (&w, &crate::quant::entity_hashes(&w)), &[], None, &config);
    assert_eq!(s.free_views.len(), SPARE_VIEWS, "the next encode keeps a few spares");
}
