#!/usr/bin/env bash
cd "$(dirname "$0")/.."
# Scrape latency of /metrics with N bots connected (bots share this machine).
# Usage (after a release build): deploy/measure_scrape.sh [N=100]
set -u
N=${1:-100}
D=$(mktemp -d)
./target/release/dualplane serve --bind 127.0.0.1:0 --admin-bind 127.0.0.1:0 --dev-dir $D --max-clients 256 > $D/serve.log 2>&1 &
S=$!
sleep 1.5
ADDR=$(sed -n 's/.* on \(127\.0\.0\.1:[0-9]*\) (QUIC.*/\1/p' $D/serve.log)
ADMIN=$(sed -n 's/^admin http on \([0-9.:]*\).*/\1/p' $D/serve.log)
./target/release/dualplane bot --server $ADDR --count $N --duration 40 --dev-dir $D --json > $D/bots.json 2>&1 &
B=$!
sleep 12
curl -s http://$ADMIN/metrics | grep -E '^dualplane_clients\{role="player"'
for i in $(seq 200); do curl -s -o /dev/null -w '%{time_total}\n' http://$ADMIN/metrics; sleep 0.05; done > $D/scrape.txt
sort -n $D/scrape.txt | awk '{a[NR]=$1} END {print "scrapes="NR, "p50="a[int(NR*0.5)]*1000"ms", "p90="a[int(NR*0.9)]*1000"ms", "p99="a[int(NR*0.99)]*1000"ms", "max="a[NR]*1000"ms"}'
wait $B
python3 -c "
import json; b=json.load(open('$D/bots.json')); print('connected', b['connected'], 'hash_failures', b['hash_failures'])"
kill -TERM $S; wait $S
