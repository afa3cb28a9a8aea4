//! Connect tokens as a peer sends them in its Hello: the structural decoder,
//! then the full gate (key ring, signature, expiry, server, match, role,
//! reuse). Errors, never panics; what decodes re-mints to the same claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net::token::{decode, mint, KeyRing, Role, TokenGate, TokenSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(u) = decode(text) {
        let c = &u.claims;
        let spec = TokenSpec { key_id: c.key_id, client_id: c.client_id, role: c.role, expires_at: c.expires_at, nonce: c.nonce, server_id: &c.server_id, match_id: &c.match_id };
        let again = decode(&mint(b"fuzz key 16 bytes", &spec)).expect("a token we minted decodes");
        assert_eq!(&again.claims, c);
    }
    let mut gate = TokenGate::new(KeyRing::single(0, b"fuzz key 16 bytes".to_vec()), "dev", "");
    for role in [Role::Player, Role::Policy, Role::Observer] {
        let _ = gate.admit(text, role, 1_000);
    }
});
