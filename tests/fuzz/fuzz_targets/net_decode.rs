//! Every decoder a peer's bytes reach: the socket guard's look at a raw
//! UDP datagram, control-stream frames (policy observations among them), ack and
//! input (command) datagrams and the server session that takes them
//! (server side), player blocks, snapshot deltas against a baseline and the
//! client session that applies them (client side). Errors, never panics; what decodes
//! re-encodes to a frame that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net::proto::{Ack, Frame};
use net::quant::QEntity;
use net::session::ClientSession;

fuzz_target!(|data: &[u8]| {
    let ids = net::guard::HashedConnectionIdGenerator::from_key(7);
    let _ = net::guard::classify(data, &ids);
    if let Ok(f) = Frame::decode(data) {
        let body = f.encode();
        let body = &body[4..]; // encode() prefixes the u32 length
        let again = Frame::decode(body).expect("a frame we encoded decodes");
        // Bytes, not values: NaN floats (an Observe radius, observed
        // columns) are not equal to themselves.
        assert_eq!(again.encode(), f.encode());
    }
    if let Ok(o) = net::observe::Observed::decode(data) {
        assert_eq!(o.encode(), data, "observations are canonical");
        let _ = o.select(3, 5.0);
    }
    let _ = Ack::decode(data);
    if let Ok(d) = net::command::InputDatagram::decode(data) {
        assert_eq!(net::command::InputDatagram::decode(&d.encode()).expect("re-encoded input decodes"), d);
    }
    let _ = net::command::PlayerBlock::unwrap(data);
    let config = net::session::CoreConfig::default();
    for role in [net::token::Role::Player, net::token::Role::Policy] {
        let mut s = net::session::ServerSession::new(1, 2, role, vec![(1 << 32) | 3], &config, 0);
        let _ = s.on_datagram(1, 100, data);
        let _ = s.input(2, 100, data.to_vec());
    }
    let baseline: Vec<QEntity> = (0..8u64)
        .map(|i| QEntity { handle: (1 << 32) | i, archetype: (i % 3) as u8, shape: i as u32, pos: [i as i32 * 1000, 500, -7], rot: 0x4000_0000, vel: [i as i16, 0, -3] })
        .collect();
    if let Ok((_, view)) = net::delta::decode(data, &baseline) {
        assert!(view.windows(2).all(|w| w[0].handle < w[1].handle), "views stay sorted by handle");
    }
    let mut c = ClientSession::new();
    c.on_datagram(data);
    c.on_datagram(data);
    let _ = c.poll_ack();
    let _ = c.columns();
});
