//! Records what built this crate, so a replay can name the build that made
//! it: the git commit (`DUALPLANE_COMMIT` overrides, for builds outside a
//! checkout), the rustc version, the target triple and the rapier3d version
//! from Cargo.lock. Each becomes a `DUALPLANE_BUILD_*` compile-time env var.

use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The version of package `name` in a Cargo.lock's text.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let needle = format!("name = \"{name}\"\n");
    let at = lock.find(&needle)? + needle.len();
    let line = lock[at..].lines().next()?;
    Some(line.strip_prefix("version = \"")?.trim_end_matches('"').to_string())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in [".git/HEAD", ".git/logs/HEAD", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=DUALPLANE_COMMIT");
    let commit = std::env::var("DUALPLANE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| run("git", &["-C", &root.display().to_string(), "rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let rapier = locked_version(&lock, "rapier3d").unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DUALPLANE_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=DUALPLANE_BUILD_RUSTC={rustc}");
    println!("cargo:rustc-env=DUALPLANE_BUILD_TARGET={target}");
    println!("cargo:rustc-env=DUALPLANE_BUILD_RAPIER={rapier}");
}
