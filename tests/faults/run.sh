#!/usr/bin/env bash
# The fault lab: tests/faults/run.sh [--full] [--out DIR] [--only NAME,...]
# Runs every fault scenario against the release binary (target/release/
# dualplane, or $DUALPLANE_BIN) over real QUIC on loopback and writes
# DIR/RESULTS.md and DIR/results.json (default DIR: target/faults).
# Short form (the test command): ~6 minutes. --full: 60 s profiles, a
# 10-minute soak, 1,000-connection churn (~25 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 tests/faults/lab.py "$@"
