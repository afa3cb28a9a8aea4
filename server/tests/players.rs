//! Players over real QUIC: a player who reconnects with a fresh token for
//! the same client id within the grace period gets its avatar back, whether
//! its old connection closed or died quietly; after the grace, a new one.

mod common;

use common::{mint, start, unix};
use net::driver::{connect, DevCredentials};
use net::proto::Frame;
use net::token::Role;
use std::time::Duration;

fn avatar(c: &net::driver::Connected) -> u64 {
    match &c.welcome {
        Frame::Welcome { controlled, .. } => controlled.first().copied().expect("an avatar"),
        other => panic!("expected a welcome, got {other:?}"),
    }
}

#[test]
fn reconnects_within_the_grace_period_keep_their_avatar() {
    let dev = tempfile::tempdir().expect("tempdir");
    let s = start(dev.path(), &["--reconnect-grace-ms", "1500"]);
    let creds = DevCredentials::load_or_create(dev.path()).expect("creds");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let token = |id: u32, nonce: u64| mint(&creds.key, id, Role::Player, unix() + 60, nonce);
        // A clean close, then back with a fresh token.
        let a = connect(s.addr, &creds.cert_der, Role::Player, &token(1, 1)).await.expect("player");
        let first = avatar(&a);
        a.conn.close(quinn::VarInt::from_u32(0), b"brb");
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let b = connect(s.addr, &creds.cert_der, Role::Player, &token(1, 2)).await.expect("reconnect");
        assert_eq!(avatar(&b), first, "the same avatar after a reconnect");
        // The old connection is still open (it died quietly, as far as the
        // server knows): the reconnect replaces it.
        let c = connect(s.addr, &creds.cert_der, Role::Player, &token(1, 3)).await.expect("second reconnect");
        assert_eq!(avatar(&c), first);
        let closed = tokio::time::timeout(Duration::from_secs(3), b.conn.closed()).await.expect("the replaced connection is closed");
        assert!(format!("{closed}").contains("replaced by a reconnect"), "{closed}");
        // Gone longer than the grace: a fresh avatar.
        c.conn.close(quinn::VarInt::from_u32(0), b"bye");
        drop(c);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let d = connect(s.addr, &creds.cert_der, Role::Player, &token(1, 4)).await.expect("late return");
        assert_ne!(avatar(&d), first, "grace over: a new avatar");
    });
}
