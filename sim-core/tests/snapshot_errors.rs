//! Hostile snapshot bytes are errors, never panics.

mod common;

use proptest::prelude::*;
use sim_core::{SnapshotError, World};

fn snap() -> Vec<u8> {
    common::small_world().snapshot().expect("snapshot")
}

#[test]
fn header_errors_are_specific() {
    let s = snap();
    assert_eq!(World::restore(&s[..10]).err(), Some(SnapshotError::Truncated(10)));
    let mut m = s.clone();
    m[0] = b'X';
    assert_eq!(World::restore(&m).err(), Some(SnapshotError::BadMagic));
    let mut v = s.clone();
    v[8] = 99;
    assert_eq!(World::restore(&v).err(), Some(SnapshotError::Version { found: 99 }));
    let t = &s[..s.len() - 3];
    assert!(matches!(World::restore(t), Err(SnapshotError::Length { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_corruption_never_panics(pos in 0usize..100_000, byte in any::<u8>(), cut in 0usize..100_000) {
        let mut s = snap();
        let p = pos % s.len();
        s[p] ^= byte | 1;
        let _ = World::restore(&s);
        let c = cut % s.len();
        let _ = World::restore(&s[..c]);
    }
}

