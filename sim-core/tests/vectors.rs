//! Contract test: the golden microplan byte vectors in `ports/vectors/`
//! (shared with the Python tests). Rust encodes each byte-identically and
//! decode(encode(x)) == x.

use serde_json::Value;
use sim_core::{Handle, MicroPlan, Op, PlanBuilder, SourceId, Tick};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ports/vectors")
}

fn f3(v: &Value) -> [f32; 3] {
    std::array::from_fn(|i| v[i].as_f64().expect("number") as f32)
}

fn f4(v: &Value) -> [f32; 4] {
    std::array::from_fn(|i| v[i].as_f64().expect("number") as f32)
}

fn h(v: &Value) -> Handle {
    Handle::from_bits(v.as_u64().expect("handle"))
}

fn op(v: &Value) -> Op {
    match v["op"].as_str().expect("op name") {
        "spawn" => Op::Spawn {
            archetype: v["archetype"].as_u64().expect("archetype") as u32,
            shape: v["shape"].as_u64().expect("shape") as u32,
            position: f3(&v["position"]),
            rotation: f4(&v["rotation"]),
            linvel: f3(&v["linvel"]),
            angvel: f3(&v["angvel"]),
        },
        "despawn" => Op::Despawn { handle: h(&v["handle"]) },
        "set_velocity" => Op::SetVelocity { handle: h(&v["handle"]), linvel: f3(&v["linvel"]), angvel: f3(&v["angvel"]) },
        "apply_impulse" => Op::ApplyImpulse { handle: h(&v["handle"]), impulse: f3(&v["impulse"]) },
        "move_to" => Op::MoveTo { handle: h(&v["handle"]), target: f3(&v["target"]), max_speed: v["max_speed"].as_f64().expect("speed") as f32 },
        "raycast" => Op::Raycast { origin: f3(&v["origin"]), direction: f3(&v["direction"]), max_distance: v["max_distance"].as_f64().expect("dist") as f32 },
        "overlap" => Op::Overlap { min: f3(&v["min"]), max: f3(&v["max"]) },
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn golden_vectors_encode_byte_identically_and_roundtrip() {
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("vectors.json")).expect("vectors.json")).expect("json");
    let vectors = spec["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 4);
    let bless = std::env::var_os("DUALPLANE_BLESS").is_some();
    for v in vectors {
        let name = v["name"].as_str().expect("name");
        let ops: Vec<Op> = v["ops"].as_array().expect("ops").iter().map(op).collect();
        let mut b = PlanBuilder::new(
            Tick(v["target_tick"].as_u64().expect("tick")),
            SourceId(v["source"].as_u64().expect("source") as u32),
            v["sequence"].as_u64().expect("seq") as u32,
        )
        .correlation(v["correlation"].as_u64().expect("correlation"));
        for o in &ops {
            b.push(*o);
        }
        let bytes = b.build();
        let path = dir().join(format!("{name}.plan"));
        if bless {
            std::fs::write(&path, &bytes).expect("write vector");
        }
        let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (bless with DUALPLANE_BLESS=1)", path.display()));
        assert_eq!(bytes, golden, "{name}: encoding changed");
        let decoded = MicroPlan::decode(golden).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Decoding yields the ops grouped by kind (the application order).
        let mut sorted = ops.clone();
        sorted.sort_by_key(|o| o.kind());
        assert_eq!(decoded.ops(), sorted, "{name}: decode(encode(x)) != x");
        assert_eq!(decoded.header().correlation, v["correlation"].as_u64().expect("correlation"));
    }
}
