#!/usr/bin/env python3
"""Validates deploy/agones: every Agones kind against its JSON schema
(deploy/agones/schemas), every pod template inside them as a Kubernetes
Pod (kubernetes-validate, strict), other kinds with kubernetes-validate,
and dualplane's own annotations. Also checks that each negative example
fails, so the check can fail.

    python deploy/check_k8s.py [deploy/agones]
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.31.0"
AGONES = {"agones.dev/v1", "autoscaling.agones.dev/v1", "allocation.agones.dev/v1"}
# CRDs checked against our schemas like Agones' kinds.
SCHEMA_CHECKED = AGONES | {"cert-manager.io/v1"}
OUR_ANNOTATIONS = {"dualplane.dev/scenario", "dualplane.dev/seed", "dualplane.dev/max-clients", "dualplane.dev/session"}


def pod_templates(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    if doc["kind"] == "GameServer":
        return [spec.get("template", {})]
    if doc["kind"] == "Fleet":
        return [spec.get("template", {}).get("spec", {}).get("template", {})]
    return []


def annotations(doc: dict) -> dict:
    out = dict(doc.get("metadata", {}).get("annotations", {}))
    spec = doc.get("spec", {})
    out.update(spec.get("metadata", {}).get("annotations", {}))
    out.update(spec.get("template", {}).get("metadata", {}).get("annotations", {}))
    return out


def check(doc: dict, schemas: Path) -> list[str]:
    errors = []
    api, kind = doc.get("apiVersion", "?"), doc.get("kind", "?")
    if api in SCHEMA_CHECKED:
        schema = json.loads((schemas / f"{kind}.json").read_text())
        v = jsonschema.Draft202012Validator(schema)
        errors += [f"{kind}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
        for tpl in pod_templates(doc):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": tpl.get("metadata", {"name": "x"}) or {"name": "x"}, "spec": tpl.get("spec", {})}
            pod["metadata"].setdefault("name", "template")
            try:
                kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{kind} pod template: {'/'.join(map(str, e.path))}: {e.message}")
        for k, val in annotations(doc).items():
            if k.startswith("dualplane.dev/") and k not in OUR_ANNOTATIONS:
                errors.append(f"{kind}: unknown annotation {k} (known: {sorted(OUR_ANNOTATIONS)})")
            if k in ("dualplane.dev/seed", "dualplane.dev/max-clients") and not str(val).isdigit():
                errors.append(f"{kind}: {k}={val!r} must be a non-negative integer")
    else:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{kind}: {e.message}")
    return errors


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "agones")
    schemas = root / "schemas"
    failed = 0
    kinds = set()
    for f in sorted(root.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc:
                continue
            kinds.add(doc["kind"])
            errs = check(doc, schemas)
            for e in errs:
                print(f"{f}: {e}")
            failed += bool(errs)
            print(f"{'ok' if not errs else 'FAIL'}: {f.name} {doc['kind']}")
    missing = {"GameServer", "Fleet", "FleetAutoscaler", "GameServerAllocation", "Certificate", "PersistentVolumeClaim", "Job"} - kinds
    if missing:
        print(f"missing manifests for {sorted(missing)}")
        failed += 1
    # The check must be able to fail: broken copies are rejected.
    fleet = yaml.safe_load((root / "fleet.yaml").read_text())
    bad = []
    b = copy.deepcopy(fleet)
    b["spec"]["template"]["spec"]["ports"][0]["portPolicy"] = "Dynamc"
    bad.append(("typo in portPolicy", b))
    b = copy.deepcopy(fleet)
    b["spec"]["template"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"x": 1}
    bad.append(("pod template field of the wrong type", b))
    b = copy.deepcopy(fleet)
    b["spec"]["replica"] = 2
    bad.append(("unknown Fleet field", b))
    b = copy.deepcopy(fleet)
    b["spec"]["template"]["metadata"]["annotations"]["dualplane.dev/max-clients"] = "many"
    bad.append(("non-numeric max-clients", b))
    cert = next(d for d in yaml.safe_load_all((root / "certificate.yaml").read_text()) if d)
    # The Fleet mounts the Secret the Certificate writes.
    secrets = [v["secret"]["secretName"] for v in fleet["spec"]["template"]["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    if cert["spec"]["secretName"] not in secrets:
        print(f"FAIL: the Fleet does not mount the Certificate's Secret {cert['spec']['secretName']!r} (mounts {secrets})")
        failed += 1
    # Replays outlive pods: the Fleet mounts the claim the verify Job reads.
    claims = [v["persistentVolumeClaim"]["claimName"] for v in fleet["spec"]["template"]["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    docs = [d for d in yaml.safe_load_all((root / "replays.yaml").read_text()) if d]
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    job = next(d for d in docs if d["kind"] == "Job")
    job_claims = [v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    if pvc["metadata"]["name"] not in claims or pvc["metadata"]["name"] not in job_claims:
        print(f"FAIL: the Fleet ({claims}) and the verify Job ({job_claims}) do not both mount {pvc['metadata']['name']!r}")
        failed += 1
    b = copy.deepcopy(job)
    b["spec"]["backofLimit"] = 0
    bad.append(("Job with a misspelt field", b))
    b = copy.deepcopy(cert)
    del b["spec"]["secretName"]
    bad.append(("Certificate without secretName", b))
    b = copy.deepcopy(cert)
    b["spec"]["privateKey"]["rotationPolicy"] = "Sometimes"
    bad.append(("Certificate with a bad rotationPolicy", b))
    for what, doc in bad:
        if not check(doc, schemas):
            print(f"FAIL: the check accepted a broken manifest ({what})")
            failed += 1
    print(f"{len(bad)} broken manifests rejected as expected" if not failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
