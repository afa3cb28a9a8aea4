#!/usr/bin/env bash
# Bounded fuzzing of every decoder of untrusted bytes (cargo-fuzz/libFuzzer).
# Usage: tests/fuzz.sh [seconds per target]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
if ! cargo fuzz --version >/dev/null 2>&1; then
    # A build tool: unoptimized (--debug) is fast enough and builds sooner.
    cargo install --debug cargo-fuzz --locked
fi
# cargo-fuzz needs nightly-only flags; the stable toolchain accepts them
# with RUSTC_BOOTSTRAP (see shared/FACTS.md).
export RUSTC_BOOTSTRAP=1
FD=tests/fuzz
cd "$FD"
mkdir -p corpus/plan_apply corpus/snapshot_restore corpus/scenario_parse corpus/replay_read corpus/net_decode corpus/token_decode corpus/graph_decode
cp ../../sim-core/ports/vectors/*.plan corpus/plan_apply/
cp ../../sim-core/scenarios/default.toml ../scenarios/small.toml corpus/scenario_parse/
DP=../../target/release/dualplane
$DP simulate --scenario ../scenarios/small.toml --ticks 5 \
    --snapshot-at 5:corpus/snapshot_restore/small5.snap > /dev/null
$DP simulate --scenario ../scenarios/small.toml --ticks 40 --keyframe-every 20 --flush-every 7 \
    --record corpus/replay_read/small40.rpl > /dev/null
$DP token --client-id 7 --role policy --dev-dir corpus/token_decode/dev --server-id gs-1 --match m-1 | tr -d '\n' > corpus/token_decode/v2.token
rm -rf corpus/token_decode/dev
# Seed: the example behaviour graph (utility_npc_graph).
../../.venv/bin/python -m dualplane.policies.utility_npc_graph --out corpus/graph_decode/utility_npc.graph 2> /dev/null \
    || { echo "cannot write the example graph (needs the .venv the test command makes)"; exit 1; }
cargo fuzz build -O --fuzz-dir .
for t in plan_apply snapshot_restore scenario_parse replay_read net_decode token_decode graph_decode; do
    echo "--- fuzz $t for ${SECS}s"
    rc=0
    cargo fuzz run -O --fuzz-dir . "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=4096 > "/tmp/dualplane-fuzz-$t.log" 2>&1 || rc=$?
    grep -E "^Done|ERROR|panicked|SUMMARY" "/tmp/dualplane-fuzz-$t.log" || true
    if [ "$rc" -ne 0 ]; then
        tail -40 "/tmp/dualplane-fuzz-$t.log"
        echo "fuzz target $t failed (rc=$rc); reproducer in tests/fuzz/artifacts/$t"
        exit 1
    fi
done
