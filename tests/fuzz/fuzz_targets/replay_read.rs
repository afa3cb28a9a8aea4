//! Read arbitrary replay bytes: errors or early stops, never panics; the
//! recovered part is usable (ranges, records, keyframe decode).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replays::Replay;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Replay::parse(data.to_vec()) {
        let (first, last) = r.range();
        assert!(first <= last);
        let _ = r.record(last);
        for k in &r.keyframes {
            let _ = r.keyframe_snapshot(k);
        }
    }
});
