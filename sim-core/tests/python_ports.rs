//! The generated Python port module checked into policy-py must match what
//! this build generates from the IDL (fails when stale; regenerate with
//! `dualplane ports gen-python`).

use std::path::PathBuf;

#[test]
fn checked_in_python_ports_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy-py/python/dualplane");
    for (name, want) in [("_ports.py", sim_core::ports::PYTHON_PORTS), ("_ports.pyi", sim_core::ports::PYTHON_PORTS_PYI)] {
        let have = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(have == want, "policy-py/python/dualplane/{name} is stale: run `cargo run -p server -- ports gen-python`");
    }
    assert!(sim_core::ports::PYTHON_PORTS.contains(&format!("PORTS_SCHEMA_HASH = {:#018x}", sim_core::PORTS_SCHEMA_HASH)));
}
