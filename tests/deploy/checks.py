"""Checks of tether's deployment artifacts; run through tests/deploy/check.sh.

Every check parses what it checks into objects and compares structures: the
chart is linted and rendered by Helm's own Go engine (helm.py), manifests are
validated against the Kubernetes JSON schemas shipped by kubernetes-validate,
and the Dockerfile is linted by hadolint.

    python tests/deploy/checks.py              # all checks
    python tests/deploy/checks.py --regen-raw  # rewrite webhook-config/ from the chart
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tether"
RAW = ROOT / "webhook-config"
HERE = ROOT / "tests" / "deploy"
CHART_CRDS = CHART / "crds" / "tether.dev.yaml"
RAW_CRDS = RAW / "crds.yaml"
# Local development only, before `tether crds` exists: read both CRD copies from
# this file instead. Never set in CI; every run that uses it says so.
CRDS_OVERRIDE = os.environ.get("TETHER_DEPLOY_CRDS_OVERRIDE")
if CRDS_OVERRIDE:
    CHART_CRDS = RAW_CRDS = Path(CRDS_OVERRIDE).resolve()
RELEASE = "tether"
NAMESPACE = "tether-system"
KUBE_VERSION = "1.33"

# Kinds backed by CRDs: kubernetes-validate has no schema for them.
CRD_BACKED_GROUPS = {"cert-manager.io", "monitoring.coreos.com", "tether.dev"}
# Labels only Helm sets; the plain manifests leave them out.
HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}
# Files in webhook-config/ that are not generated from the chart.
RAW_HANDWRITTEN = {"crds.yaml", "namespace.yaml", "kustomization.yaml"}

# ---------------------------------------------------------------------------
# What the webhooks must route (SPEC 5, issue text). One tuple per
# (apiGroup, apiVersion, resource, operation).

PLAIN_KINDS = [
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("keda.sh", "v1alpha1", "scaledobjects"),
    ("autoscaling.k8s.io", "v1", "verticalpodautoscalers"),
]


def _routes(items: list[tuple[str, str, str]], ops: list[str]) -> set[tuple[str, ...]]:
    return {(g, v, r, op) for (g, v, r) in items for op in ops}


TARGET_SELECTOR = {"matchExpressions": [{"key": "tether.dev/target", "operator": "Exists"}]}
EXPECTED_WEBHOOKS: dict[str, dict[str, dict[str, Any]]] = {
    "MutatingWebhookConfiguration": {
        "attachedresources.mutate.tether.dev": {
            "path": "/mutate",
            "routes": _routes([("tether.dev", "v1alpha1", "attachedresources")],
                              ["CREATE", "UPDATE"]),
            "objectSelector": None,
        },
        "appdomains.mutate.tether.dev": {
            "path": "/mutate",
            # UPDATE: an emptied spec.domain is restored from oldObject (SPEC 5.4).
            "routes": _routes([("tether.dev", "v1alpha1", "appdomains")], ["CREATE", "UPDATE"]),
            "objectSelector": None,
        },
        "targets.mutate.tether.dev": {
            "path": "/mutate",
            "routes": _routes(PLAIN_KINDS, ["CREATE", "UPDATE"]),
            "objectSelector": TARGET_SELECTOR,
        },
    },
    "ValidatingWebhookConfiguration": {
        "attachedresources.validate.tether.dev": {
            "path": "/validate",
            "routes": _routes([("tether.dev", "v1alpha1", "attachedresources")],
                              ["CREATE", "UPDATE", "DELETE"]),
            "objectSelector": None,
        },
        "appdomains.validate.tether.dev": {
            "path": "/validate",
            "routes": _routes([("tether.dev", "v1alpha1", "appdomains")], ["CREATE", "UPDATE"]),
            "objectSelector": None,
        },
    },
}

# ---------------------------------------------------------------------------
# Tiny runner: each check raises AssertionError (or anything) to fail.

RESULTS: list[tuple[str, bool, str]] = []


def run(name: str, fn: Callable[[], None]) -> bool:
    try:
        fn()
    except AssertionError as e:
        RESULTS.append((name, False, str(e) or "assertion failed"))
        print(f"FAIL {name}: {e}", flush=True)
        return False
    except Exception as e:  # a crash in a check is a failed check, with its trace
        RESULTS.append((name, False, f"{type(e).__name__}: {e}"))
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(limit=3)
        return False
    RESULTS.append((name, True, ""))
    print(f"PASS {name}", flush=True)
    return True


def note(msg: str) -> None:
    print(f"     note: {msg}", flush=True)


# ---------------------------------------------------------------------------
# Helpers


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for d in docs:
        assert isinstance(d, dict), f"{path}: a document is not a mapping"
    return docs


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj.get("kind", ""), obj.get("metadata", {}).get("namespace", ""),
            obj.get("metadata", {}).get("name", ""))


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o.get("kind") == kind]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def require_shape(obj: dict[str, Any], where: str) -> None:
    assert isinstance(obj.get("apiVersion"), str) and obj["apiVersion"], \
        f"{where}: missing apiVersion"
    assert isinstance(obj.get("kind"), str) and obj["kind"], f"{where}: missing kind"
    name = (obj.get("metadata") or {}).get("name")
    assert isinstance(name, str) and name, f"{where}: {obj.get('kind')} without metadata.name"


def values_file(name: str) -> dict[str, Any]:
    return yaml.safe_load((HERE / name).read_text()) or {}


def strip_helm_labels(obj: Any) -> Any:
    """The object as the plain manifests carry it: without Helm-only labels."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "labels" and isinstance(v, dict):
                v = {lk: lv for lk, lv in v.items() if lk not in HELM_ONLY_LABELS}
            out[k] = strip_helm_labels(v)
        return out
    if isinstance(obj, list):
        return [strip_helm_labels(v) for v in obj]
    return obj


RAW_SKIPPED_TEMPLATE = "admission-keys.yaml"


def raw_generated_files() -> list[Path]:
    return sorted(p for p in RAW.glob("*.yaml") if p.name not in RAW_HANDWRITTEN)


def raw_objects(include_crds: bool = True) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for p in sorted(RAW.glob("*.yaml")):
        if p.name in ("kustomization.yaml", "crds.yaml"):
            continue
        out.extend((p, d) for d in load_yaml_docs(p))
    if include_crds and RAW_CRDS.is_file():
        out.extend((RAW_CRDS, d) for d in load_yaml_docs(RAW_CRDS))
    return out


# ---------------------------------------------------------------------------
# Renders (shared by several checks; a failed render fails its own check)

RENDERS: dict[str, helm.Rendered] = {}
VALUE_SETS = {
    # Defaults plus the required domainRoot (the default controllers include domains).
    "default": "values-default.yaml",
    "all-on": "values-all-on.yaml",
    "byo-tls": "values-byo-tls.yaml",
    # Host network, non-default ports, OpenShift UIDs, digest, extra args/env.
    "hostnet-openshift": "values-hostnet-openshift.yaml",
}


def render_check(label: str) -> Callable[[], None]:
    def fn() -> None:
        fname = VALUE_SETS[label]
        values = values_file(fname) if fname else None
        r = helm.render(CHART, values, RELEASE, NAMESPACE)
        seen = set()
        for o in r.objects:
            require_shape(o, f"render {label}")
            assert key(o) not in seen, f"duplicate object {key(o)}"
            seen.add(key(o))
        assert r.objects, "rendered nothing"
        assert len(r.writes) == len(r.objects), \
            f"Helm created {len(r.writes)} objects for {len(r.objects)} rendered"
        RENDERS[label] = r
        note(f"{len(r.objects)} objects: " + ", ".join(sorted({o['kind'] for o in r.objects})))
    return fn


def rendered(label: str) -> list[dict[str, Any]]:
    assert label in RENDERS, f"render of {label} values failed earlier"
    return RENDERS[label].objects


# ---------------------------------------------------------------------------
# Checks


def check_crds_present() -> None:
    if CRDS_OVERRIDE:
        note(f"TETHER_DEPLOY_CRDS_OVERRIDE: CRDs read from {CRDS_OVERRIDE}, not the repo")
    missing = [str(p.relative_to(ROOT)) for p in (CHART_CRDS, RAW_CRDS) if not p.is_file()]
    assert not missing, ("missing generated CRDs: " + ", ".join(missing) +
                         " (generate them with `tether crds`)")
    chart_docs = load_yaml_docs(CHART_CRDS)
    raw_docs = load_yaml_docs(RAW_CRDS)
    names = sorted(d.get("metadata", {}).get("name", "") for d in chart_docs)
    assert names == ["appdomains.tether.dev", "attachedresources.tether.dev"], \
        f"{CHART_CRDS.relative_to(ROOT)} holds {names}"
    for d in chart_docs:
        require_shape(d, str(CHART_CRDS))
        assert d["kind"] == "CustomResourceDefinition", f"unexpected kind {d['kind']}"
        assert d["spec"]["group"] == "tether.dev"
        assert d["spec"]["scope"] == "Namespaced", f"{d['metadata']['name']} is not Namespaced"
    assert sorted(map(key, chart_docs)) == sorted(map(key, raw_docs)) and \
        sorted(chart_docs, key=key) == sorted(raw_docs, key=key), \
        "charts/tether/crds/tether.dev.yaml and webhook-config/crds.yaml differ"


def lint_check(label: str) -> Callable[[], None]:
    def fn() -> None:
        fname = VALUE_SETS[label]
        msgs = helm.lint(CHART, values_file(fname) if fname else None)
        bad = [m for m in msgs if m.severity in ("WARNING", "ERROR", "UNKNOWN")]
        for m in msgs:
            if m not in bad:
                note(f"lint {m.severity} {m.path}")
        assert not bad, "helm lint: " + "; ".join(f"{m.severity} in {m.path}" for m in bad) + \
            " (the shim drops message texts; the render check shows Helm's error)"
    return fn


SCHEMA_REJECTS = [
    ("replicas of the wrong type", {"replicas": "two"}, "replicas"),
    ("unknown top-level key", {"replica": 2}, "replica"),
    ("failurePolicy outside its enum", {"failurePolicy": "Maybe"}, "failurePolicy"),
    ("timeoutSeconds over 30", {"timeoutSeconds": 31}, "timeoutSeconds"),
    ("controllers not a known list", {"controllers": "everything"}, "controllers"),
    ("a zero API rate", {"kubeApi": {"qps": 0, "burst": 10}}, "qps"),
    ("attachableKinds entry without resources",
     {"attachableKinds": [{"apiGroup": "policy"}]}, "resources"),
    ("bool given as string", {"attachAnyKind": "yes"}, "attachAnyKind"),
    ("BYO TLS without a secret",
     {"certManager": {"enabled": False}, "tls": {"caBundle": "Y2E="},
      "domainRoot": "apps.example.com"},
     "tls.existingSecret is required"),
    ("the domains controller without domainRoot (default controllers)", {}, "domainRoot"),
    ("the domains controller without domainRoot (explicit)",
     {"controllers": "domains", "domainRoot": ""}, "domainRoot"),
    ("BYO TLS without a caBundle",
     {"certManager": {"enabled": False}, "tls": {"existingSecret": "s"},
      "domainRoot": "apps.example.com"},
     "tls.caBundle is required"),
    ("NetworkPolicy without the API server's addresses",
     {"networkPolicy": {"enabled": True}, "domainRoot": "apps.example.com"},
     "networkPolicy.apiServerCIDRs is required"),
    # A PDB that allows no eviction blocks every node drain (issue 15).
    ("replicas 1 with the default PDB (minAvailable 1)",
     {"replicas": 1, "domainRoot": "apps.example.com"},
     "podDisruptionBudget.minAvailable 1 with replicas 1 allows no pod to be evicted"),
    ("minAvailable equal to replicas",
     {"replicas": 3, "podDisruptionBudget": {"minAvailable": 3},
      "domainRoot": "apps.example.com"},
     "set replicas to at least 4"),
    ("minAvailable 100%",
     {"podDisruptionBudget": {"minAvailable": "100%"}, "domainRoot": "apps.example.com"},
     "podDisruptionBudget.minAvailable 100% with replicas 2"),
    ("minAvailable 60% of 2 replicas (rounds up to 2)",
     {"podDisruptionBudget": {"minAvailable": "60%"}, "domainRoot": "apps.example.com"},
     "allows no pod to be evicted"),
    ("minAvailable that is neither a count nor a percentage",
     {"podDisruptionBudget": {"minAvailable": "one"}, "domainRoot": "apps.example.com"},
     "minAvailable"),
    ("shutdownDelay over 60s",
     {"shutdownDelay": "61s", "domainRoot": "apps.example.com"},
     "shutdownDelay 61s is more than 60s"),
    ("shutdownDelay of 2m",
     {"shutdownDelay": "2m", "domainRoot": "apps.example.com"}, "more than 60s"),
    ("shutdownDelay in hours / with a space",
     {"shutdownDelay": "1h", "domainRoot": "apps.example.com"}, "shutdownDelay"),
    ("extraEnv repeating a variable the chart sets",
     {"extraEnv": [{"name": "TETHER_LISTEN", "value": "0.0.0.0:1"}],
      "domainRoot": "apps.example.com"},
     "extraEnv sets TETHER_LISTEN, which the chart already sets"),
    ("extraEnv entry without a name",
     {"extraEnv": [{"value": "x"}], "domainRoot": "apps.example.com"}, "name"),
    ("extraArgs entry that is not a flag",
     {"extraArgs": ["check"], "domainRoot": "apps.example.com"}, "extraArgs"),
    ("image.digest that is not a sha256 digest",
     {"image": {"digest": "latest"}, "domainRoot": "apps.example.com"}, "digest"),
    ("admission and metrics on one port",
     {"ports": {"admission": 9090, "metrics": 9090}, "domainRoot": "apps.example.com"},
     "ports.admission and ports.metrics are both 9090"),
    ("port out of range",
     {"ports": {"admission": 70000, "metrics": 9090}, "domainRoot": "apps.example.com"},
     "admission"),
    ("hostNetwork with a NetworkPolicy (which would not apply)",
     {"hostNetwork": True,
      "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.0/8"]},
      "domainRoot": "apps.example.com"},
     "a NetworkPolicy does not apply to pods in the node's network"),
    ("helm test image without a tag",
     {"tests": {"image": {"repository": "curlimages/curl", "tag": ""}},
      "domainRoot": "apps.example.com"}, "tag"),
    ("NetworkPolicy CIDR that is not a CIDR",
     {"networkPolicy": {"enabled": True, "apiServerCIDRs": ["api.example.com"]},
      "domainRoot": "apps.example.com"},
     "apiServerCIDRs"),
]


SCHEMA_ACCEPTS = [
    ("replicas 1 without a PDB", {"replicas": 1, "podDisruptionBudget": {"enabled": False}}),
    ("minAvailable 50% of 2 replicas", {"podDisruptionBudget": {"minAvailable": "50%"}}),
    ("shutdownDelay of exactly 60s", {"shutdownDelay": "60s"}),
    ("shutdownDelay of 1m", {"shutdownDelay": "1m"}),
]


def check_schema_rejects() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert schema.get("additionalProperties") is False, \
        "values.schema.json: top level must set additionalProperties: false"
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    extra = set(defaults) - set(schema["properties"])
    assert not extra, f"values.yaml keys missing from the schema: {sorted(extra)}"
    missing = set(schema["properties"]) - set(defaults)
    assert not missing, f"schema keys without a default in values.yaml: {sorted(missing)}"
    problems = []
    for what, values, expect in SCHEMA_REJECTS:
        try:
            helm.render(CHART, values, RELEASE, NAMESPACE)
            problems.append(f"{what}: accepted")
        except helm.HelmError as e:
            if expect not in str(e):
                problems.append(f"{what}: rejected, but the message lacks {expect!r}: {e}")
    # Without the domains controller no root is needed.
    try:
        helm.render(CHART, {"controllers": "attached"}, RELEASE, NAMESPACE)
    except helm.HelmError as e:
        problems.append(f"controllers=attached without domainRoot: rejected: {e}")
    # Accepted: what the refusals above must not catch.
    for what, values in SCHEMA_ACCEPTS:
        try:
            helm.render(CHART, {"domainRoot": "apps.example.com", **values}, RELEASE, NAMESPACE)
        except helm.HelmError as e:
            problems.append(f"{what}: rejected: {e}")
    assert not problems, "; ".join(problems)
    note(f"{len(SCHEMA_REJECTS)} bad value sets rejected by Helm")


def k8s_validate(objs: list[tuple[str, dict[str, Any]]]) -> None:
    import kubernetes_validate

    errors, skipped, ok = [], [], 0
    for where, obj in objs:
        require_shape(obj, where)
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        label = f"{where}: {obj['kind']}/{obj['metadata']['name']}"
        if group in CRD_BACKED_GROUPS:
            skipped.append(label)
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            ok += 1
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{label}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{label}: {e.message}")
    for s in skipped:
        note(f"schema skipped (CRD-backed kind; parsed, has apiVersion/kind/name): {s}")
    note(f"{ok} objects valid against Kubernetes {KUBE_VERSION} schemas (strict)")
    assert not errors, "; ".join(errors)


def validate_render(label: str) -> Callable[[], None]:
    return lambda: k8s_validate([(f"render {label}", o) for o in rendered(label)])


def check_validate_raw() -> None:
    assert RAW_CRDS.is_file(), f"{RAW_CRDS} missing"
    k8s_validate([(p.name, o) for p, o in raw_objects()])


def check_webhooks(objs: list[dict[str, Any]], *, failure_policy: str = "Fail",
                   timeout: int = 10, exclusions: list[str] | None = None,
                   cert_manager: bool = True) -> None:
    """The webhooks route exactly the expected kinds and operations, with the
    registration settings every tether webhook shares."""
    want_ns = {"kube-system", NAMESPACE, *(exclusions or [])}
    for kind, hooks in EXPECTED_WEBHOOKS.items():
        cfg = one(objs, kind)
        ann = (cfg["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from")
        if cert_manager:
            assert ann == f"{NAMESPACE}/tether-serving", f"{kind}: inject-ca-from is {ann!r}"
        else:
            assert ann is None, f"{kind}: inject-ca-from set without cert-manager"
        got = {w["name"]: w for w in cfg.get("webhooks") or []}
        assert set(got) == set(hooks), f"{kind}: webhooks {sorted(got)} != {sorted(hooks)}"
        for name, exp in hooks.items():
            w = got[name]
            routes = {
                (g, v, r, op)
                for rule in w.get("rules") or []
                for g in rule.get("apiGroups", []) for v in rule.get("apiVersions", [])
                for r in rule.get("resources", []) for op in rule.get("operations", [])
            }
            assert routes == exp["routes"], \
                f"{name}: routes {sorted(routes)} != expected {sorted(exp['routes'])}"
            for rule in w.get("rules") or []:
                assert rule.get("scope") == "Namespaced", f"{name}: rule scope {rule.get('scope')}"
            assert w.get("admissionReviewVersions") == ["v1"], f"{name}: admissionReviewVersions"
            assert w.get("sideEffects") == "None", f"{name}: sideEffects {w.get('sideEffects')}"
            assert w.get("timeoutSeconds") == timeout, f"{name}: timeoutSeconds"
            assert w.get("failurePolicy") == failure_policy, f"{name}: failurePolicy"
            assert w.get("matchPolicy") == "Equivalent", f"{name}: matchPolicy"
            svc = (w.get("clientConfig") or {}).get("service") or {}
            assert svc == {"name": "tether", "namespace": NAMESPACE, "path": exp["path"],
                           "port": 443}, f"{name}: clientConfig.service {svc}"
            ca = (w.get("clientConfig") or {}).get("caBundle")
            assert (ca is None) == cert_manager, f"{name}: caBundle {'set' if ca else 'missing'}"
            exprs = (w.get("namespaceSelector") or {}).get("matchExpressions") or []
            notin = [e for e in exprs if e.get("key") == "kubernetes.io/metadata.name"
                     and e.get("operator") == "NotIn"]
            assert len(notin) == 1 and set(notin[0].get("values", [])) == want_ns, \
                f"{name}: namespaceSelector {exprs} does not exclude exactly {sorted(want_ns)}"
            assert w.get("objectSelector") == exp["objectSelector"], \
                f"{name}: objectSelector {w.get('objectSelector')}"


def check_deployment(objs: list[dict[str, Any]], replicas: int) -> None:
    dep = one(objs, "Deployment", "tether")
    spec = dep["spec"]
    assert spec["replicas"] == replicas, f"replicas {spec['replicas']}"
    pod = spec["template"]["spec"]
    psc = pod.get("securityContext") or {}
    assert psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, \
        f"pod securityContext {psc}"
    assert (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "seccomp"
    assert pod["serviceAccountName"] == "tether"
    [c] = pod["containers"]
    assert c["args"] == ["serve"], f"args {c['args']}"
    csc = c.get("securityContext") or {}
    assert csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem"
    assert csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation"
    assert (csc.get("capabilities") or {}).get("drop") == ["ALL"], "capabilities.drop"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 8443, "metrics": 9090}, f"ports {ports}"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c[probe]["httpGet"]
        # Probes go to the metrics listener, which the admission port's traffic cannot
        # starve (issue 13; SECURITY.md "Budgets").
        assert (get["path"], get["port"], get["scheme"]) == (path, "metrics", "HTTP"), \
            f"{probe} {get}"
    env = {e["name"]: e for e in c["env"]}
    for name, field in (("POD_NAMESPACE", "metadata.namespace"),
                        ("SERVICE_ACCOUNT_NAME", "spec.serviceAccountName")):
        assert env[name].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == field, \
            f"{name} is not from the downward API"
    for name in ("TETHER_MAX_CONNECTIONS", "TETHER_TLS_HANDSHAKE_TIMEOUT", "TETHER_IDLE_TIMEOUT",
                 "TETHER_MAX_REQUESTS", "TETHER_MAX_INFLIGHT_BYTES", "TETHER_MAX_JSON_VALUES",
                 "TETHER_METRICS_MAX_CONNECTIONS"):
        assert name in env, f"budget {name} not set"
    assert env["TETHER_TLS_CERT"]["value"] == "/tls/tls.crt"
    assert env["TETHER_TLS_KEY"]["value"] == "/tls/tls.key"
    [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == "/tls"]
    assert mount.get("readOnly") is True
    [vol] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "secret" in vol, "the /tls volume is not a Secret"
    assert pod.get("affinity") and pod.get("topologySpreadConstraints"), \
        "no anti-affinity / topology spread"
    svc = one(objs, "Service", "tether")
    sports = {(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert sports == {("https", 443, "https"), ("metrics", 9090, "metrics")}, f"service {sports}"
    pdb = one(objs, "PodDisruptionBudget", "tether")
    sel = pdb["spec"]["selector"]["matchLabels"]
    assert sel == spec["selector"]["matchLabels"] == svc["spec"]["selector"], "selectors differ"


def check_deployment_default() -> None:
    objs = rendered("default")
    check_deployment(objs, 2)
    assert one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    env = {e["name"]: e.get("value") for e in one(objs, "Deployment")["spec"]["template"]
           ["spec"]["containers"][0]["env"]}
    expect = {
        "TETHER_LISTEN": "0.0.0.0:8443", "TETHER_METRICS_LISTEN": "0.0.0.0:9090",
        # The binary's own default (src/policy/mod.rs DEFAULT_BANNED_KINDS), spelled out.
        "BANNED_KINDS": "Deployment,StatefulSet,DaemonSet,ReplicaSet,ReplicationController,"
                        "Job,CronJob,Pod,Service.serving.knative.dev,"
                        "Configuration.serving.knative.dev,Revision.serving.knative.dev,"
                        "ScaledJob.keda.sh,Role,RoleBinding,ClusterRole,ClusterRoleBinding",
        "RUNNER_KSERVICE": "runner", "KNATIVE_AUTO_CREATE_CDC": "false",
        "TETHER_CONTROLLERS": "attached,domains", "TETHER_LEADER_ELECT": "true",
        "TETHER_LOG_FORMAT": "json", "TETHER_ACCESS_REVIEW_CACHE_TTL": "10s",
        "TETHER_KUBE_API_QPS": "1000", "TETHER_KUBE_API_BURST": "2000",
        "EXT_DOMAIN_ROOT": "apps.example.com",
    }
    got = {k: env.get(k) for k in expect}
    assert got == expect, f"env {got}"
    for absent in ("ALLOWED_KINDS", "TETHER_RESERVED_NAMES"):
        assert absent not in env, f"{absent} set by default"
    image = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert image.endswith(f":{app_version}"), f"image tag {image} is not appVersion"


def check_skip_namespaces() -> None:
    """The controller skips exactly the namespaces the webhooks' namespaceSelector
    skips (kube-system, the release namespace, namespaceSelector.excludeNamespaces)."""
    for label, extra in (("default", []), ("all-on", ["cert-manager", "monitoring"])):
        objs = rendered(label)
        env = {e["name"]: e.get("value") for e in one(objs, "Deployment")["spec"]["template"]
               ["spec"]["containers"][0]["env"]}
        skip = env.get("TETHER_SKIP_NAMESPACES", "").split(",")
        assert skip == ["kube-system", NAMESPACE, *extra], f"{label}: TETHER_SKIP_NAMESPACES {skip}"
        for kind in EXPECTED_WEBHOOKS:
            for w in one(objs, kind).get("webhooks") or []:
                [expr] = w["namespaceSelector"]["matchExpressions"]
                assert expr["operator"] == "NotIn" and expr["values"] == skip, \
                    f"{label}: {w['name']} skips {expr['values']}, the controller {skip}"


def check_deployment_all_on() -> None:
    objs = rendered("all-on")
    check_deployment(objs, 3)
    env = {e["name"]: e.get("value") for e in one(objs, "Deployment")["spec"]["template"]
           ["spec"]["containers"][0]["env"]}
    assert env["ALLOWED_KINDS"].startswith("HorizontalPodAutoscaler,"), env["ALLOWED_KINDS"]
    assert env["EXT_DOMAIN_ROOT"] == "apps.example.com"
    assert env["KNATIVE_AUTO_CREATE_CDC"] == "true"
    assert env["TETHER_RESERVED_NAMES"].endswith(",billing")
    sm = one(objs, "ServiceMonitor", "tether")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"


# RBAC: (apiGroup, resource, verb) the ClusterRole grants with default values.
def _grants(items: list[tuple[str, list[str], list[str]]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for g, rs, vs in items for r in rs for v in vs}


# Exactly the verbs tether's own access review checks (SPEC 5.1 step 8): copies are
# never watched.
COPY_VERBS = ["create", "get", "list", "patch", "delete"]
BASE_GRANTS = _grants([
    ("authorization.k8s.io", ["subjectaccessreviews"], ["create"]),
    ("apps", ["deployments"], ["list", "watch"]),
    ("tether.dev", ["attachedresources", "appdomains"], ["get", "list", "watch", "patch"]),
    ("tether.dev", ["attachedresources/status", "appdomains/status"], ["patch"]),
    ("events.k8s.io", ["events"], ["create", "patch"]),
])
# The attached controller's copies are owned by their Deployment with blockOwnerDeletion
# (OwnerReferencesPermissionEnforcement needs update on the owner's finalizers).
ATTACHED_GRANTS = _grants([
    ("apps", ["deployments/finalizers"], ["update"]),
])
KNATIVE_GRANTS = _grants([
    ("serving.knative.dev", ["services"], ["get", "list", "watch"]),
    # delete: OwnerReferencesPermissionEnforcement requires it to set the owner reference.
    ("serving.knative.dev", ["domainmappings"],
     ["get", "list", "watch", "create", "patch", "delete"]),
    ("networking.internal.knative.dev", ["clusterdomainclaims"],
     ["get", "list", "watch", "create", "delete"]),
    # DomainMappings are owned by their AppDomain with blockOwnerDeletion.
    ("tether.dev", ["appdomains/finalizers"], ["update"]),
])


def cluster_grants(objs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    role = one(objs, "ClusterRole", "tether")
    out = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, f"rule {rule}"
        out |= _grants([(g, rule["resources"], rule["verbs"]) for g in rule["apiGroups"]])
    return out


def attachable_grants(values: dict[str, Any]) -> set[tuple[str, str, str]]:
    return _grants([(k["apiGroup"], k["resources"], COPY_VERBS)
                    for k in values["attachableKinds"]])


def check_bindings(objs: list[dict[str, Any]], leases: bool) -> None:
    crb = one(objs, "ClusterRoleBinding", "tether")
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": "tether"}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "tether",
                                "namespace": NAMESPACE}]
    roles = by_kind(objs, "Role")
    if not leases:
        assert not roles and not by_kind(objs, "RoleBinding"), "leader-election Role rendered"
        return
    role = one(objs, "Role", "tether-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    grants = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        names = rule.get("resourceNames")
        assert names in (None, ["tether-controller"]), f"lease names {names}"
        grants |= {(v, bool(names)) for v in rule["verbs"]}
    assert {v for v, _ in grants} == {"get", "create", "patch"}, f"lease verbs {grants}"
    rb = one(objs, "RoleBinding", "tether-leader-election")
    assert rb["roleRef"]["kind"] == "Role" and rb["subjects"][0]["name"] == "tether"


def check_rbac_default() -> None:
    objs = rendered("default")
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    got = cluster_grants(objs)
    want = BASE_GRANTS | ATTACHED_GRANTS | KNATIVE_GRANTS | attachable_grants(defaults)
    assert got == want, f"ClusterRole extra {sorted(got - want)}, missing {sorted(want - got)}"
    assert not any(g == "*" or r == "*" for g, r, _ in got), "wildcard without attachAnyKind"
    assert not any(g == "coordination.k8s.io" for g, _, _ in got), "leases in the ClusterRole"
    check_bindings(objs, leases=True)
    # Every ClusterRole rule carries a comment naming why (kept in Helm's output).
    text = (CHART / "templates" / "clusterrole.yaml").read_text()
    rules = [m.start() for m in re.finditer(r"^\s*- apiGroups:", text, re.M)]
    for pos in rules:
        prev = text[:pos].rstrip().splitlines()[-1].strip()
        assert prev.startswith("#"), f"ClusterRole rule without a comment before: {prev!r}"


def check_admission_keys() -> None:
    import base64
    objs = rendered("default")
    secret = one(objs, "Secret", "tether-admission-keys")
    key1 = base64.b64decode(secret["data"]["k1"])
    assert len(key1) == 48 and key1.isalnum(), "k1 must be 48 random alphanumerics"
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["admission-keys"]["secret"]["secretName"] == "tether-admission-keys"
    c = pod["containers"][0]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["admission-keys"] == {"name": "admission-keys", "mountPath": "/admission-keys",
                                        "readOnly": True}, mounts["admission-keys"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env.get("TETHER_ADMISSION_KEYS") == "/admission-keys", env
    # A second render draws a new key (the lookup keeps an installed one; the stand-in API
    # has none): the raw manifests must never carry one.
    again = helm.render(CHART, values_file(VALUE_SETS["default"]), RELEASE, NAMESPACE).objects
    assert one(again, "Secret", "tether-admission-keys")["data"]["k1"] != secret["data"]["k1"]
    assert not [o for _, o in raw_objects() if o["kind"] == "Secret"], \
        "webhook-config/ must not carry an admission key"
    byo = helm.render(CHART, {"admissionKeys": {"existingSecret": "my-keys"},
                              "domainRoot": "apps.example.com"}, RELEASE, NAMESPACE).objects
    assert not by_kind(byo, "Secret"), "existingSecret set, yet a Secret was rendered"
    vols = {v["name"]: v for v in one(byo, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert vols["admission-keys"]["secret"]["secretName"] == "my-keys"


def check_client_ca() -> None:
    c = one(rendered("default"), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "TETHER_CLIENT_CA" not in {e["name"] for e in c["env"]}, "client CA on by default"
    objs = helm.render(CHART, {"clientCA": {"existingSecret": "apiserver-client-ca"},
                              "domainRoot": "apps.example.com"},
                       RELEASE, NAMESPACE).objects
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env.get("TETHER_CLIENT_CA") == "/client-ca/ca.crt", env
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts.get("client-ca") == "/client-ca", mounts
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["client-ca"]["secret"]["secretName"] == "apiserver-client-ca"


def check_network_policy() -> None:
    assert not by_kind(rendered("default"), "NetworkPolicy"), \
        "NetworkPolicy rendered with default values (it must be an explicit opt-in)"
    np = one(rendered("all-on"), "NetworkPolicy")
    spec = np["spec"]
    assert spec["policyTypes"] == ["Ingress"], spec["policyTypes"]
    pods = one(rendered("all-on"), "Deployment")["spec"]["template"]["metadata"]["labels"]
    sel = spec["podSelector"]["matchLabels"]
    assert sel and all(pods.get(k) == v for k, v in sel.items()), \
        f"podSelector {sel} does not select tether's pods {pods}"
    rules = {r["ports"][0]["port"]: r for r in spec["ingress"]}
    assert set(rules) == {"https", "metrics"}, f"ingress ports {sorted(rules)}"
    assert all(len(r["ports"]) == 1 for r in spec["ingress"]), "one port per ingress rule"
    admission = [p["ipBlock"]["cidr"] for p in rules["https"]["from"] if "ipBlock" in p]
    assert admission == ["10.0.0.10/32", "fd00::10/128"], f"admission peers {admission}"
    # Besides the API server, only this release's `helm test` pod (same namespace).
    others = [p for p in rules["https"]["from"] if "ipBlock" not in p]
    assert others == [{"podSelector": {"matchLabels": TEST_POD_LABELS}}], \
        f"admission peers besides the API server: {others}"
    values = values_file(VALUE_SETS["all-on"])
    assert rules["metrics"]["from"] == values["networkPolicy"]["metricsFrom"], \
        f"metrics peers {rules['metrics']['from']}"
    # The named ports must exist on the container, or the policy matches nothing.
    ports = {p["name"] for c in one(rendered("all-on"), "Deployment")["spec"]["template"]
             ["spec"]["containers"] for p in c.get("ports", [])}
    assert {"https", "metrics"} <= ports, f"container ports {sorted(ports)}"
    closed = helm.render(CHART, {"networkPolicy": {"enabled": True, "metricsFrom": [],
                                                   "apiServerCIDRs": ["10.0.0.0/8"]},
                                 "domainRoot": "apps.example.com"},
                         RELEASE, NAMESPACE)
    ingress = one(closed.objects, "NetworkPolicy")["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in ingress] == ["https"], \
        f"metricsFrom: [] must close the metrics port, got {ingress}"


TEST_POD_LABELS = {"app.kubernetes.io/name": "tether-test", "app.kubernetes.io/instance": RELEASE,
                   "app.kubernetes.io/component": "helm-test"}


def container_env(objs: list[dict[str, Any]]) -> dict[str, Any]:
    c = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def check_grace_period() -> None:
    """terminationGracePeriodSeconds = shutdownDelay (rounded up) + timeoutSeconds + 5."""
    pod = one(rendered("default"), "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 20, pod.get("terminationGracePeriodSeconds")
    pod = one(rendered("hostnet-openshift"), "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 50, pod.get("terminationGracePeriodSeconds")
    for delay, timeout, want in (("500ms", 10, 16), ("0s", 10, 15), ("60s", 30, 95),
                                 ("1m", 1, 66)):
        objs = helm.render(CHART, {"shutdownDelay": delay, "timeoutSeconds": timeout,
                                   "domainRoot": "apps.example.com"}, RELEASE, NAMESPACE).objects
        pod = one(objs, "Deployment")["spec"]["template"]["spec"]
        got = pod["terminationGracePeriodSeconds"]
        assert got == want, \
            f"shutdownDelay {delay}, timeoutSeconds {timeout}: grace {got} != {want}"
        assert container_env(objs)["TETHER_SHUTDOWN_DELAY"] == delay


def check_deployment_options() -> None:
    """hostNetwork with its ports, OpenShift UIDs, image.digest, extraArgs/extraEnv,
    priorityClassName and resources reach the pod as the values say."""
    objs = rendered("hostnet-openshift")
    dep = one(objs, "Deployment", "tether")
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 3
    assert pod.get("hostNetwork") is True, "hostNetwork"
    assert pod.get("dnsPolicy") == "ClusterFirstWithHostNet", f"dnsPolicy {pod.get('dnsPolicy')}"
    assert pod.get("priorityClassName") == "system-cluster-critical"
    # OpenShift: no fixed IDs anywhere, still non-root with seccomp.
    psc, csc = pod["securityContext"], pod["containers"][0]["securityContext"]
    assert psc == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}, psc
    assert "runAsUser" not in csc and csc["runAsNonRoot"] is True and \
        csc["readOnlyRootFilesystem"] is True and csc["capabilities"] == {"drop": ["ALL"]}, csc
    [c] = pod["containers"]
    assert c["image"] == ("registry.example.com/platform/tether@sha256:"
                          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), \
        c["image"]
    assert c["args"] == ["serve", "--access-review-cache-ttl=30s"], c["args"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"https": 10443,
                                                                   "metrics": 10090}
    env = container_env(objs)
    assert env["TETHER_LISTEN"] == "0.0.0.0:10443", env["TETHER_LISTEN"]
    assert env["TETHER_METRICS_LISTEN"] == "0.0.0.0:10090", env["TETHER_METRICS_LISTEN"]
    assert env["TETHER_SHUTDOWN_DELAY"] == "30s"
    names = [e["name"] for e in c["env"]]
    assert names[-2:] == ["HTTPS_PROXY", "NODE_NAME"], f"extraEnv not appended: {names[-3:]}"
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert len(names) == len(set(names)), "duplicate env names"
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"memory": "512Mi"}}, c["resources"]
    # Probes and the Service follow the named ports, so they follow the values.
    assert c["readinessProbe"]["httpGet"]["port"] == "metrics"
    svc = one(objs, "Service", "tether")
    assert {(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == \
        {(443, "https"), (9090, "metrics")}
    # Defaults: pod network, the image's UID, tag from appVersion, only `serve`.
    dpod = one(rendered("default"), "Deployment")["spec"]["template"]["spec"]
    assert "hostNetwork" not in dpod and "dnsPolicy" not in dpod
    assert dpod["securityContext"]["runAsUser"] == 65532
    assert dpod["containers"][0]["args"] == ["serve"]
    tagged = helm.render(CHART, {"image": {"tag": "1.2.3", "digest": "sha256:" + "a" * 64},
                                 "domainRoot": "apps.example.com"}, RELEASE, NAMESPACE).objects
    img = one(tagged, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert img == "ghcr.io/tether-dev/tether:1.2.3@sha256:" + "a" * 64, img
    one(rendered("hostnet-openshift"), "PodDisruptionBudget")  # 2 of 3: allowed


def test_pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "Pod", "tether-test-webhook")


def check_test_hook() -> None:
    """templates/tests/: a `helm test` pod that POSTs an AdmissionReview to the webhook
    Service over TLS with the webhooks' CA and requires tether's answer."""
    import base64
    import json
    text = (CHART / "templates" / "tests" / "webhook-answers.yaml").read_text()
    assert re.search(r"^\s+helm\.sh/hook: test$", text, re.M), "no helm.sh/hook: test"
    assert re.search(r"^\s+helm\.sh/hook-delete-policy: before-hook-creation,hook-succeeded$",
                     text, re.M), "hook-delete-policy"
    # install never creates it: the default render has no Pod.
    assert not by_kind(rendered("default"), "Pod"), "the test pod is created on install"

    def render(values: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        objs = helm.render(CHART, {"domainRoot": "apps.example.com", **values}, RELEASE,
                           NAMESPACE, test_hooks=True).objects
        pod = test_pod(objs)
        ann = pod["metadata"]["annotations"]
        assert ann == {"hook.stripped.test/hook": "test", "hook.stripped.test/hook-delete-policy":
                       "before-hook-creation,hook-succeeded"}, ann
        k8s_validate([("test hook", pod)])
        return objs, pod

    objs, pod = render({})
    svc = one(objs, "Service", "tether")
    assert pod["metadata"]["labels"].items() >= TEST_POD_LABELS.items()
    sel = svc["spec"]["selector"]
    assert not sel.items() <= pod["metadata"]["labels"].items(), \
        "the test pod carries the Service's selector labels (it would receive webhook calls)"
    [c] = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    # Where the API server calls: the webhooks' clientConfig.service.
    hook = one(objs, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]
    assert env["URL"] == (f"https://{hook['name']}.{hook['namespace']}.svc:{hook['port']}"
                          f"{hook['path']}?timeout=10s"), env["URL"]
    review = json.loads(env["REVIEW"])
    assert review["kind"] == "AdmissionReview" and review["apiVersion"] == "admission.k8s.io/v1"
    assert review["request"]["uid"] == env["UID_WANT"]
    assert "object" not in review["request"]["object"]["spec"], "the review must be invalid"
    assert review["request"]["namespace"] not in ("kube-system", NAMESPACE)
    script = c["args"][0]
    assert '"allowed":false' in script and "$UID_WANT" in script and "--cacert" in script
    assert c["image"] == "curlimages/curl:8.11.1", c["image"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    # cert-manager: the CA issuer's ca.crt beside the serving certificate.
    assert env["CA_FILE"] == "/ca/ca.crt" and mounts["ca"] == "/ca"
    assert vols["ca"]["secret"] == {"secretName": "tether-tls",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # Bring-your-own TLS: the CA is tls.caBundle itself.
    byo = values_file(VALUE_SETS["byo-tls"])
    _, pod = render(byo)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["CA_PEM"] == base64.b64decode(byo["tls"]["caBundle"]).decode()
    assert env["CA_FILE"] == "/tmp/ca.crt"
    # Client certificates required, none given to the test: it checks the refusal.
    _, pod = render({"clientCA": {"existingSecret": "apiserver-client-ca"}})
    script = pod["spec"]["containers"][0]["args"][0]
    assert "refused" in script and "--data" not in script, script
    # ... and with one, it presents it.
    _, pod = render({"clientCA": {"existingSecret": "apiserver-client-ca"},
                     "tests": {"clientCertSecret": "tether-test-client"}})
    script = pod["spec"]["containers"][0]["args"][0]
    assert "--cert /client/tls.crt --key /client/tls.key" in script, script
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["client"]["secret"]["secretName"] == "tether-test-client"
    # tests.enabled=false: no test pod.
    objs = helm.render(CHART, {"domainRoot": "apps.example.com", "tests": {"enabled": False}},
                       RELEASE, NAMESPACE, test_hooks=True).objects
    assert not by_kind(objs, "Pod"), "tests.enabled=false still renders the test pod"


DOCS = ["README.md", "SECURITY.md", "charts/tether/README.md", "charts/tether/values.yaml",
        "charts/tether/templates", "webhook-config/README.md", "certs/README.md"]


def check_docs_standalone() -> None:
    """The README and the chart's docs stand on their own: no references to the
    product spec or other files outside the repository, and every relative
    Markdown link resolves to a file in the repository."""
    problems = []
    files: list[Path] = []
    for d in DOCS:
        p = ROOT / d
        files.extend(sorted(p.rglob("*")) if p.is_dir() else [p])
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text()
        rel = f.relative_to(ROOT)
        for n, line in enumerate(text.splitlines(), 1):
            if re.search(r"\bSPEC\b|APISERVER\.md|\bshared/", line):
                problems.append(f"{rel}:{n}: refers outside the repository: {line.strip()}")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # URLs are fine; this is about files
            dest = (f.parent / target).resolve()
            if ROOT not in dest.parents and dest != ROOT:
                problems.append(f"{rel}: link {target} leaves the repository")
            elif not dest.exists():
                problems.append(f"{rel}: link {target} points at nothing")
    assert not problems, "; ".join(problems)
    note(f"{len(files)} documentation files checked")


def check_lifecycle_docs() -> None:
    """Upgrading (CRDs are never upgraded by Helm) and uninstalling (finalizers) are
    documented with commands that name the real paths, finalizer and label."""
    text = (CHART / "README.md").read_text()
    up = re.search(r"^## Upgrading$(.*?)^## ", text, re.M | re.S)
    assert up, "chart README lacks an Upgrading section"
    assert "kubectl apply --server-side --force-conflicts -f charts/tether/crds/" in up.group(1)
    assert (ROOT / "charts/tether/crds").is_dir()
    un = re.search(r"^## Uninstalling$(.*?)^## ", text, re.M | re.S)
    assert un, "chart README lacks an Uninstalling section"
    body = un.group(1)
    for crd in load_yaml_docs(CHART_CRDS):
        name = crd["metadata"]["name"]
        assert name in body, f"Uninstalling does not delete {name}"
    # The finalizer and label the docs name are the ones the controller uses.
    src = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.rs"))
    for literal in ("tether.dev/cleanup", "tether.dev/attached-resource"):
        assert f'"{literal}"' in src, f"{literal} is not a string in src/"
        assert literal in body, f"Uninstalling does not name {literal}"
    assert '{"metadata":{"finalizers":null}}' in body, "no finalizer removal command"


def tether_bin() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    b = target / "debug" / "tether"
    assert b.is_file(), (f"{b} missing: run `cargo build` first (scripts/test.sh runs "
                         "cargo test, which builds it, before these checks)")
    return b


class Tether:
    """tether serve --standalone on loopback ports chosen by the kernel (port 0),
    read back from its ready log line."""

    def __init__(self, tmp: Path, extra: list[str]):
        import json
        import time
        self.certs = tmp / "certs"
        self.log = tmp / "tether.log"
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [str(tether_bin()), "serve", "--standalone", "--dev-certs-dir", str(self.certs),
                 "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                 "--log-format", "json", *extra],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if "tether ready" in json.dumps(ev):
                    fields = ev.get("fields", ev)
                    self.port = int(str(fields["listen"]).rsplit(":", 1)[1])
                    assert self.port != 0, f"ready line without the bound port: {line}"
                    return
            if self.proc.poll() is not None:
                raise AssertionError(f"tether exited: {self.log.read_text()}")
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"tether not ready: {self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_hook_script(pod: dict[str, Any], env_over: dict[str, str]) -> tuple[int, str]:
    [c] = pod["spec"]["containers"]
    assert c["command"] == ["/bin/sh", "-ec"], c["command"]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    env.update(env_over)
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    out = subprocess.run(["sh", "-ec", c["args"][0]], env=env, capture_output=True, text=True,
                         timeout=120)
    return out.returncode, out.stdout + out.stderr


def check_test_hook_live() -> None:
    """The rendered `helm test` script, run with sh and curl as in its pod, against a
    real tether (standalone, loopback): passes on tether's answer; fails when the
    answer lacks the expected uid or the CA is wrong; with --client-ca and no client
    certificate it passes only because tether refuses the caller."""
    import tempfile
    assert shutil.which("curl"), "curl not found (scripts/test.sh installs it)"
    pod = test_pod(helm.render(CHART, values_file(VALUE_SETS["default"]), RELEASE, NAMESPACE,
                               test_hooks=True).objects)
    refusal = test_pod(helm.render(CHART, {"domainRoot": "apps.example.com",
                                           "clientCA": {"existingSecret": "client-ca"}},
                                   RELEASE, NAMESPACE, test_hooks=True).objects)
    with tempfile.TemporaryDirectory(prefix="tether-hook-") as d:
        t = Tether(Path(d), [])
        try:
            over = {"URL": f"https://localhost:{t.port}/validate?timeout=10s",
                    "CA_FILE": str(t.certs / "ca.crt")}
            rc, out = run_hook_script(pod, over)
            assert rc == 0 and "PASS" in out, f"against tether: exit {rc}: {out}"
            rc, out = run_hook_script(pod, {**over, "UID_WANT": "another-uid"})
            assert rc != 0 and "FAIL" in out, f"a wrong uid passed: exit {rc}: {out}"
            # Another CA (curl trusts a partial chain, so not tether's own leaf).
            bad_ca = Path(d) / "other-ca.crt"
            gen = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=not tether's CA",
                 "-days", "1", "-keyout", str(Path(d) / "other-ca.key"), "-out", str(bad_ca)],
                capture_output=True, text=True, timeout=60)
            assert gen.returncode == 0, f"openssl: {gen.stderr}"
            rc, out = run_hook_script(pod, {**over, "CA_FILE": str(bad_ca)})
            assert rc != 0, f"a wrong CA passed: {out}"
            # The clientCA variant fails against a tether that answers anyone.
            rc, out = run_hook_script(refusal, over)
            assert rc != 0 and "FAIL" in out, f"refusal check passed without --client-ca: {out}"
        finally:
            t.stop()
    with tempfile.TemporaryDirectory(prefix="tether-hook-") as d:
        # First start makes the dev CA; the second requires client certificates from it.
        t = Tether(Path(d), [])
        t.stop()
        t = Tether(Path(d), ["--client-ca", str(Path(d) / "certs" / "ca.crt")])
        try:
            rc, out = run_hook_script(refusal, {
                "URL": f"https://localhost:{t.port}/validate?timeout=10s",
                "CA_FILE": str(t.certs / "ca.crt")})
            assert rc == 0 and "refused" in out, f"clientCA refusal: exit {rc}: {out}"
        finally:
            t.stop()


def check_test_sh_promtool() -> None:
    """scripts/test.sh gets promtool without installing Debian's prometheus package
    (whose install starts a Prometheus server on tether's default metrics port 9090):
    scripts/fetch-promtool.sh only downloads the .deb and unpacks promtool."""
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    fetch = (ROOT / "scripts" / "fetch-promtool.sh").read_text()
    def code(t: str) -> list[str]:
        return [ln for ln in t.splitlines() if ln.strip() and not ln.strip().startswith("#")]

    for name, lines in (("scripts/test.sh", code(test_sh)),
                        ("scripts/fetch-promtool.sh", code(fetch))):
        for ln in lines:
            assert not re.search(r"apt(-get)?\s+install\b.*prometheus|dpkg\s+-i", ln), \
                f"{name} installs the prometheus package: {ln.strip()}"
            assert "missing+=(prometheus)" not in ln, f"{name}: {ln.strip()}"
    assert "bash scripts/fetch-promtool.sh" in test_sh
    assert "apt-get download -qq prometheus" in fetch and "dpkg-deb -x" in fetch
    assert re.search(r"install -D -m 0755 \"\$tmp/x/usr/bin/promtool\"", fetch)


def check_rbac_all_on() -> None:
    got = cluster_grants(rendered("all-on"))
    want = BASE_GRANTS | ATTACHED_GRANTS | KNATIVE_GRANTS | _grants([("*", ["*"], COPY_VERBS)])
    assert got == want, f"ClusterRole extra {sorted(got - want)}, missing {sorted(want - got)}"
    check_bindings(rendered("all-on"), leases=True)


def check_rbac_byo() -> None:
    objs = rendered("byo-tls")  # controllers: none, leaderElect: false
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    got = cluster_grants(objs)
    want = BASE_GRANTS | attachable_grants(defaults)
    assert got == want, f"ClusterRole extra {sorted(got - want)}, missing {sorted(want - got)}"
    check_bindings(objs, leases=False)


def check_cert_manager(objs: list[dict[str, Any]]) -> None:
    issuers = {o["metadata"]["name"]: o for o in by_kind(objs, "Issuer")}
    certs = {o["metadata"]["name"]: o for o in by_kind(objs, "Certificate")}
    assert set(issuers) == {"tether-selfsigned", "tether-ca"}, f"issuers {sorted(issuers)}"
    assert set(certs) == {"tether-ca", "tether-serving"}, f"certificates {sorted(certs)}"
    assert issuers["tether-selfsigned"]["spec"] == {"selfSigned": {}}
    ca = certs["tether-ca"]["spec"]
    assert ca["isCA"] is True and ca["issuerRef"]["name"] == "tether-selfsigned"
    assert issuers["tether-ca"]["spec"]["ca"]["secretName"] == ca["secretName"]
    serving = certs["tether-serving"]["spec"]
    assert serving["issuerRef"]["name"] == "tether-ca"
    assert serving["dnsNames"] == [f"tether.{NAMESPACE}.svc",
                                   f"tether.{NAMESPACE}.svc.cluster.local"], serving["dnsNames"]
    assert "server auth" in serving["usages"]
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    [vol] = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert vol["secret"]["secretName"] == serving["secretName"], "mounted Secret != issued"


def check_byo_tls() -> None:
    objs = rendered("byo-tls")
    assert not by_kind(objs, "Issuer") and not by_kind(objs, "Certificate")
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    [vol] = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert vol["secret"]["secretName"] == "tether-tls-byo"
    check_webhooks(objs, cert_manager=False)


def check_observability() -> None:
    """prometheusRule and grafanaDashboard: off by default; when on, the PrometheusRule
    carries exactly files/alerts.yaml (runbook links prefixed with runbookBaseUrl) and the
    ConfigMap exactly files/dashboard.json, labelled for the Grafana sidecar."""
    for o in rendered("default"):
        assert o["kind"] not in ("PrometheusRule",), "PrometheusRule rendered by default"
        assert not (o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")), \
            "dashboard ConfigMap rendered by default"
    values = values_file("values-default.yaml")
    base = "https://git.example.com/tether/blob/v0.1.0/"
    values["prometheusRule"] = {"enabled": True, "labels": {"release": "prometheus"},
                                "runbookBaseUrl": base}
    values["grafanaDashboard"] = {"enabled": True, "namespace": "monitoring",
                                  "annotations": {"grafana_folder": "tether"}}
    objs = helm.render(CHART, values, RELEASE, NAMESPACE).objects
    rule = one(objs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    want = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    for group in want["groups"]:
        for r in group["rules"]:
            r["annotations"]["runbook_url"] = base + r["annotations"]["runbook_url"]
    assert rule["spec"] == want, "PrometheusRule spec differs from files/alerts.yaml"
    names = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(names) == 7, names
    cm = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert len(cm) == 1, "no dashboard ConfigMap"
    cm = cm[0]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "tether"}
    import json
    got = json.loads(cm["data"]["tether.json"])
    assert got == json.loads((CHART / "files" / "dashboard.json").read_text()), \
        "ConfigMap dashboard differs from files/dashboard.json"
    note(f"{len(names)} alerts, {len(got['panels'])} dashboard panels")


def check_dashboard_generated() -> None:
    """files/dashboard.json is what scripts/dashboard.py generates (run it after editing)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "dashboard.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (out.stdout + out.stderr).strip()


def check_notes() -> None:
    notes = RENDERS["default"].notes if "default" in RENDERS else ""
    assert "--dry-run=server" in notes and "kind: AttachedResource" in notes, \
        "NOTES.txt lacks the server-side dry run of a test AttachedResource"
    assert "rollout status deployment/tether" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE} --logs" in notes, "NOTES.txt lacks helm test"
    # Helm never upgrades crds/: `helm upgrade` reminds, `helm install` does not.
    crd_apply = "kubectl apply --server-side --force-conflicts -f charts/tether/crds/"
    assert crd_apply not in notes, "install NOTES talk about upgrading CRDs"
    up = helm.render(CHART, values_file(VALUE_SETS["default"]), RELEASE, NAMESPACE, upgrade=True)
    assert crd_apply in up.notes, "upgrade NOTES do not say how to upgrade the CRDs"


def check_raw_matches_chart() -> None:
    chart_objs = sorted((strip_helm_labels(o) for o in rendered("default")
                         if o["kind"] != "Secret"), key=key)
    raw = sorted((o for p, o in raw_objects(include_crds=False) if p.name not in
                  RAW_HANDWRITTEN), key=key)
    extra = {key(o) for o in raw} - {key(o) for o in chart_objs}
    missing = {key(o) for o in chart_objs} - {key(o) for o in raw}
    assert not extra and not missing, \
        (f"webhook-config/ extra {sorted(extra)}, missing {sorted(missing)}; "
         "regenerate with `bash tests/deploy/check.sh --regen-raw`")
    diff = [key(a) for a, b in zip(chart_objs, raw) if a != b]
    assert not diff, (f"webhook-config/ differs from the chart for {diff}; "
                      "regenerate with `bash tests/deploy/check.sh --regen-raw`")
    ns = load_yaml_docs(RAW / "namespace.yaml")
    assert [(o["kind"], o["metadata"]["name"]) for o in ns] == [("Namespace", NAMESPACE)]


def check_kustomization() -> None:
    k = yaml.safe_load((RAW / "kustomization.yaml").read_text())
    assert k.get("apiVersion") == "kustomize.config.k8s.io/v1beta1"
    assert k.get("kind") == "Kustomization"
    resources = k.get("resources") or []
    files = sorted(p.name for p in RAW.glob("*.yaml") if p.name != "kustomization.yaml")
    want = sorted(set(files) | {"crds.yaml"})
    assert sorted(resources) == want, f"kustomization resources {resources} != files {want}"
    assert resources[:2] == ["crds.yaml", "namespace.yaml"], \
        "crds.yaml and namespace.yaml should come first"
    kubectl = shutil.which("kubectl")
    # kubectl ships with the machine image; no silent skip if it is missing.
    assert kubectl, "kubectl not found: `kubectl kustomize webhook-config/` cannot be checked"
    assert (RAW / "crds.yaml").exists(), "webhook-config/crds.yaml is missing (cargo run -- crds)"
    out = subprocess.run([kubectl, "kustomize", str(RAW)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"kubectl kustomize: {out.stderr.strip()}"
    built = sorted(key(d) for d in yaml.safe_load_all(out.stdout) if d)
    direct = sorted(key(o) for _, o in raw_objects())
    assert built == direct, "kubectl kustomize output != the files' objects"
    note(f"kubectl kustomize built {len(built)} objects")


def check_readme_table() -> None:
    """The chart README's attachable-kinds table lists exactly the defaults."""
    text = (CHART / "README.md").read_text()
    m = re.search(r"<!-- attachable-kinds:begin -->(.*?)<!-- attachable-kinds:end -->",
                  text, re.S)
    assert m, "README.md lacks the attachable-kinds table markers"
    rows = []
    for line in m.group(1).strip().splitlines()[2:]:  # skip header and separator
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        rows.append((cells[0], sorted(r.strip().strip("`") for r in cells[1].split(","))))
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["attachableKinds"]
    want = [(k["apiGroup"] or "core", sorted(k["resources"])) for k in defaults]
    assert rows == want, f"README table {rows} != values.yaml attachableKinds {want}"


def check_dockerfile() -> None:
    hadolint = Path(sys.prefix) / "bin" / "hadolint"
    out = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"hadolint: {out.stdout.strip()} {out.stderr.strip()}"
    # The final stage: static non-root base, numeric USER, the binary and `serve`.
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    instrs = [ln for ln in lines if ln and not ln.startswith("#")]
    froms = [i for i, ln in enumerate(instrs) if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2, "Dockerfile is not multi-stage"
    final = instrs[froms[-1]:]
    base = final[0].split()[1]
    assert base == "scratch" or re.fullmatch(
        r"gcr\.io/distroless/static-debian12:nonroot@sha256:[0-9a-f]{64}", base), f"base {base}"
    # Every base image pinned: by digest, or by an exact x.y.z version tag (issue 15).
    for i in froms:
        image = instrs[i].split()[1]
        if image == "scratch":
            continue
        assert re.search(r"@sha256:[0-9a-f]{64}$", image) or \
            re.fullmatch(r"[^:@]+:\d+\.\d+\.\d+(-[a-z0-9.]+)?", image), \
            f"FROM {image}: pin it by digest or an exact version"
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users and users[-1] in ("65532", "65532:65532"), f"USER {users}"
    assert 'ENTRYPOINT ["/usr/local/bin/tether"]' in final, "ENTRYPOINT"
    assert 'CMD ["serve"]' in final, "CMD"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "target" in [x.strip().strip("/") for x in ignore], ".dockerignore lacks target/"


def check_certs_gitignore() -> None:
    lines = [ln.strip() for ln in (ROOT / "certs" / ".gitignore").read_text().splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    assert "dev/" in lines and "*.key" in lines, f"certs/.gitignore: {lines}"
    assert (ROOT / "certs" / "README.md").is_file()


# ---------------------------------------------------------------------------


def regen_raw() -> int:
    """Write webhook-config/<template>.yaml from the chart rendered with the default
    value set (defaults plus the required domainRoot)."""
    r = helm.render(CHART, values_file(VALUE_SETS["default"]), RELEASE, NAMESPACE)
    chunks: dict[str, list[str]] = {}
    for doc in re.split(r"^---\s*$", r.manifest, flags=re.M):
        m = re.search(r"^# Source: tether/templates/(\S+)$", doc, re.M)
        if not m:
            continue
        body = doc[m.end():].strip("\n")
        kept = [ln for ln in body.splitlines()
                if not re.match(r"^\s*(helm\.sh/chart|app\.kubernetes\.io/managed-by):", ln)]
        chunks.setdefault(m.group(1), []).append("\n".join(kept))
    # The admission-key Secret holds a random key: a committed copy would be one key for
    # every install of the raw manifests. webhook-config/README.md says how to create it.
    chunks.pop(RAW_SKIPPED_TEMPLATE, None)
    for old in raw_generated_files():
        old.unlink()
    for name, docs in sorted(chunks.items()):
        header = (f"# Generated from charts/tether/templates/{name} (release {RELEASE}, "
                  f"namespace {NAMESPACE}, default values, domainRoot apps.example.com)\n"
                  "# by `bash tests/deploy/check.sh --regen-raw`; do not edit by hand.\n")
        (RAW / name).write_text(header + "---\n" + "\n---\n".join(docs) + "\n")
        print(f"wrote webhook-config/{name}")
    return 0


def main() -> int:
    helm.ensure_env()
    if sys.argv[1:] == ["--regen-raw"]:
        return regen_raw()
    run("crds: generated CRD files present, parse, and agree", check_crds_present)
    for label in VALUE_SETS:
        run(f"helm lint ({label} values)", lint_check(label))
    for label in VALUE_SETS:
        run(f"helm render ({label} values)", render_check(label))
    run("values.schema.json rejects wrong values", check_schema_rejects)
    for label in VALUE_SETS:
        run(f"kubernetes-validate: chart ({label} values)", validate_render(label))
    run("kubernetes-validate: webhook-config/ (incl. CRDs)", check_validate_raw)
    run("webhooks: chart (default values)", lambda: check_webhooks(rendered("default")))
    run("webhooks: chart (all-on values)", lambda: check_webhooks(
        rendered("all-on"), failure_policy="Ignore", timeout=5,
        exclusions=["cert-manager", "monitoring"]))
    run("webhooks: webhook-config/", lambda: check_webhooks(
        [o for _, o in raw_objects(include_crds=False)]))
    run("deployment: default values", check_deployment_default)
    run("deployment: all-on values", check_deployment_all_on)
    run("controller skips the namespaces the webhooks skip", check_skip_namespaces)
    run("deployment: hostNetwork, ports, OpenShift UIDs, digest, extraArgs/extraEnv",
        check_deployment_options)
    run("terminationGracePeriodSeconds derived from shutdownDelay", check_grace_period)
    run("helm test hook: POSTs a review over TLS with the webhooks' CA", check_test_hook)
    run("helm test hook: its script against a real tether (loopback)", check_test_hook_live)
    run("network policy: opt-in, admission from the API server only", check_network_policy)
    run("client CA: off by default, mounted and passed when set", check_client_ca)
    run("admission-stamp keys: generated Secret, mounted, never in webhook-config/",
        check_admission_keys)
    run("rbac: default values (least privilege)", check_rbac_default)
    run("rbac: attachAnyKind opt-in", check_rbac_all_on)
    run("rbac: controllers none, no leader election", check_rbac_byo)
    run("cert-manager chain (default values)", lambda: check_cert_manager(rendered("default")))
    run("bring-your-own TLS (byo-tls values)", check_byo_tls)
    run("prometheusRule and grafanaDashboard (opt-in, one source each)", check_observability)
    run("dashboard.json is up to date with scripts/dashboard.py", check_dashboard_generated)
    run("NOTES.txt says how to verify", check_notes)
    run("webhook-config/ matches the chart", check_raw_matches_chart)
    run("webhook-config/kustomization.yaml", check_kustomization)
    run("chart README attachable-kinds table", check_readme_table)
    run("Dockerfile (hadolint + final stage)", check_dockerfile)
    run("certs/.gitignore", check_certs_gitignore)
    run("scripts/test.sh: promtool without installing a Prometheus server", check_test_sh_promtool)
    run("README and chart docs: nothing outside the repository", check_docs_standalone)
    run("chart README: upgrading (CRDs) and uninstalling (finalizers)", check_lifecycle_docs)
    passed = sum(1 for _, ok, _ in RESULTS if ok)
    failed = len(RESULTS) - passed
    if failed:
        print("\nFailed:")
        for name, ok, why in RESULTS:
            if not ok:
                print(f"  - {name}: {why}")
    print(f"deploy checks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
