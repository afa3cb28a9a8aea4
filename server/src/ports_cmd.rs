//! `dualplane ports ...`: the generated Python side of the port IDL.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum PortsCommand {
    /// Write `_ports.py` and `_ports.pyi` into the Python package source.
    GenPython {
        /// Package directory.
        #[arg(long, default_value = "policy-py/python/dualplane")]
        out: PathBuf,
        /// Only check that the checked-in files are current (exit 1 if stale).
        #[arg(long)]
        check: bool,
    },
    /// Print the IDL's SemVer and schema hash.
    Info,
}

pub fn run(cmd: &PortsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PortsCommand::Info => {
            println!("ports semver {} schema_hash {:#018x}", sim_core::PORTS_SEMVER, sim_core::PORTS_SCHEMA_HASH);
            Ok(ExitCode::SUCCESS)
        }
        PortsCommand::GenPython { out, check } => gen_python(out, *check),
    }
}

fn gen_python(out: &Path, check: bool) -> anyhow::Result<ExitCode> {
    let files = [("_ports.py", sim_core::ports::PYTHON_PORTS), ("_ports.pyi", sim_core::ports::PYTHON_PORTS_PYI)];
    let mut stale = Vec::new();
    for (name, text) in files {
        let path = out.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            stale.push(path.clone());
            if !check {
                std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
                std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    if check && !stale.is_empty() {
        for p in &stale {
            eprintln!("stale: {} (run `dualplane ports gen-python`)", p.display());
        }
        return Ok(ExitCode::from(1));
    }
    if stale.is_empty() {
        println!("up to date: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
