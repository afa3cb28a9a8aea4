#!/usr/bin/env python3
"""Evaluates every dashboard and alert expression through a live Prometheus's
HTTP API and requires data for each. Alert expressions are evaluated without
their threshold comparison (a healthy server must still produce the series).

usage: check_prometheus.py PROM_URL dashboard.json alerts.yml
"""
import json, re, sys, time, urllib.parse, urllib.request

prom, dash_path, alerts_path = sys.argv[1:4]

def query(expr):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {body}")
    return body["data"]["result"]

exprs = []
for p in json.load(open(dash_path))["panels"]:
    for t in p["targets"]:
        exprs.append(("dashboard: " + p["title"], t["expr"]))
for line in open(alerts_path):
    m = re.match(r"\s*expr:\s*(.+)$", line)
    if m:
        e = m.group(1).strip()
        left = re.split(r"\s(?:>|<|==|!=|>=|<=)\s", e)[0]
        exprs.append(("alert", left))

missing = []
for who, e in exprs:
    res = []
    for _ in range(3):
        res = query(e)
        if res:
            break
        time.sleep(1)
    print(("ok     " if res else "NODATA ") + who + ": " + e)
    if not res:
        missing.append(e)
if missing:
    raise SystemExit(f"{len(missing)} expressions returned no data")
print(f"{len(exprs)} expressions have data")
