//! Restore arbitrary snapshot bytes: errors, never panics. Each input is
//! tried as-is (header and checksum paths) and resealed with a correct
//! checksum (so the rkyv and bincode decoders and the consistency checks see
//! it). Stepping a forged physics state is out of scope: snapshot payloads
//! are trusted once their checksum matches (see ARCHITECTURE.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sim_core::{snapshot::reseal, World};

fuzz_target!(|data: &[u8]| {
    let _ = World::restore(data);
    let mut bytes = data.to_vec();
    reseal(&mut bytes);
    let _ = World::restore(&bytes);
});
