"""Helm's own Go engine (lint, template rendering, values schema) from Python 3.11.

How and why
-----------
PyPI ``helm-sdkpy`` (pinned in requirements.txt) ships Helm v4's Go library built
as a C shared object, ``helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so``, with a
cgo header beside it. Its Python wrapper declares ``Requires-Python >=3.12`` and
needs cffi, but the machine has CPython 3.11. The .so itself does not care, so
check.sh installs the wheel with ``pip install --no-deps --ignore-requires-python``
and this module never imports the wrapper: it loads the .so with ctypes and calls
the exported C entry points directly (signatures from libhelm_sdkpy.h):

    int  helm_sdkpy_config_create(char *ns, char *kubeconfig, char *kubecontext,
                                  char *options_json, unsigned long long *handle_out);
    void helm_sdkpy_config_destroy(unsigned long long handle);
    int  helm_sdkpy_lint(handle, char *chart_path, char **result_json);
    int  helm_sdkpy_install(handle, char *release, char *chart_path, char *values_json,
                            char *version, char *options_json, char **result_json);
    char *helm_sdkpy_last_error(void);   /* per-thread slot, owned by the library */
    void  helm_sdkpy_free(void *);       /* frees result_json strings */

The shim exports no ``template`` (client-only dry run). ``install`` renders with
Helm's engine, validates the values against values.schema.json, maps every
rendered object to an API resource, and returns the release (with its rendered
``manifest``), but it talks to a cluster. So ``render`` runs it against a tiny
API stand-in on 127.0.0.1 that serves /version and discovery for the kinds the
chart may render and answers GET with 404 and POST with the object; the release
lives in Helm's in-memory storage (HELM_DRIVER=memory). Nothing leaves the
machine, nothing is written outside a temporary HOME. Helm installs a chart's
crds/ before templates and never templates them, so ``render`` works on a copy
of the chart without crds/; the CRD files are checked on their own.

Go takes the environment of the process start, so ``ensure_env`` re-executes
the interpreter with HOME, HELM_* (HELM_DRIVER=memory) and KUBECACHEDIR set.
"""

from __future__ import annotations

import ctypes
import http.server
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KUBE_VERSION = ("1", "33", "v1.33.0")

# (group, version) -> [(plural, Kind, namespaced)]: the API the stand-in server
# advertises. A rendered kind missing here fails the render ("no matches for kind").
DISCOVERY: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("secrets", "Secret", True),
        ("configmaps", "ConfigMap", True),
        ("pods", "Pod", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("rbac.authorization.k8s.io", "v1"): [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    ("admissionregistration.k8s.io", "v1"): [
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
    ],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("apiextensions.k8s.io", "v1"): [
        ("customresourcedefinitions", "CustomResourceDefinition", False)
    ],
    ("cert-manager.io", "v1"): [
        ("issuers", "Issuer", True),
        ("clusterissuers", "ClusterIssuer", False),
        ("certificates", "Certificate", True),
    ],
    ("monitoring.coreos.com", "v1"): [
        ("servicemonitors", "ServiceMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
    ("tether.dev", "v1alpha1"): [
        ("attachedresources", "AttachedResource", True),
        ("appdomains", "AppDomain", True),
    ],
}


class HelmError(Exception):
    """A Helm call failed; the message is Helm's own."""


def _find_so() -> Path:
    purelib = Path(sysconfig.get_paths()["purelib"])
    so = purelib / "helm_sdkpy" / "_lib" / "linux-amd64" / "libhelm_sdkpy.so"
    if not so.is_file():
        raise HelmError(f"libhelm_sdkpy.so not found at {so}; run tests/deploy/check.sh")
    return so


_LIB: ctypes.CDLL | None = None
_ENV_MARK = "TETHER_HELM_ENV"


def ensure_env() -> None:
    """Re-exec this Python with the environment the Go library must see at load.

    A c-shared Go runtime takes its environment from the process start (the envp
    of the library's initialiser), not from later putenv calls, so the variables
    must be in place before the interpreter starts. Call first thing in main().
    """
    if os.environ.get(_ENV_MARK) == "1":
        return
    home = Path(sys.prefix) / "helm-home"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ)
    env.pop("KUBECONFIG", None)
    env.update({
        _ENV_MARK: "1",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECACHEDIR": str(home / "kubecache"),
        # Releases live in memory: nothing is stored in the (stand-in) cluster.
        "HELM_DRIVER": "memory",
    })
    for sub in ("cache", "config", "data", "kubecache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _load() -> ctypes.CDLL:
    global _LIB
    if _LIB is not None:
        return _LIB
    if os.environ.get(_ENV_MARK) != "1" or os.environ.get("HELM_DRIVER") != "memory":
        raise HelmError("call helm.ensure_env() before using Helm (see its docstring)")
    lib = ctypes.CDLL(str(_find_so()))
    h = ctypes.c_ulonglong
    out = ctypes.POINTER(ctypes.c_void_p)
    lib.helm_sdkpy_config_create.argtypes = [ctypes.c_char_p] * 4 + [ctypes.POINTER(h)]
    lib.helm_sdkpy_config_create.restype = ctypes.c_int
    lib.helm_sdkpy_config_destroy.argtypes = [h]
    lib.helm_sdkpy_config_destroy.restype = None
    lib.helm_sdkpy_lint.argtypes = [h, ctypes.c_char_p, out]
    lib.helm_sdkpy_lint.restype = ctypes.c_int
    lib.helm_sdkpy_install.argtypes = [h] + [ctypes.c_char_p] * 5 + [out]
    lib.helm_sdkpy_install.restype = ctypes.c_int
    lib.helm_sdkpy_upgrade.argtypes = [h] + [ctypes.c_char_p] * 5 + [out]
    lib.helm_sdkpy_upgrade.restype = ctypes.c_int
    lib.helm_sdkpy_last_error.argtypes = []
    lib.helm_sdkpy_last_error.restype = ctypes.c_void_p
    lib.helm_sdkpy_free.argtypes = [ctypes.c_void_p]
    lib.helm_sdkpy_free.restype = None
    _LIB = lib
    return lib


def _last_error(lib: ctypes.CDLL) -> str:
    ptr = lib.helm_sdkpy_last_error()
    return ctypes.string_at(ptr).decode() if ptr else "unknown error"


def _take_string(lib: ctypes.CDLL, ptr: ctypes.c_void_p) -> str:
    if not ptr.value:
        return ""
    try:
        return ctypes.string_at(ptr.value).decode()
    finally:
        lib.helm_sdkpy_free(ptr.value)


class _Config:
    """A Helm action configuration handle (its own in-memory release store)."""

    def __init__(self, namespace: str, kubeconfig: str | None):
        self.lib = _load()
        self.handle = ctypes.c_ulonglong()
        rc = self.lib.helm_sdkpy_config_create(
            namespace.encode(),
            kubeconfig.encode() if kubeconfig else None,
            None,
            b"{}",
            ctypes.byref(self.handle),
        )
        if rc != 0:
            raise HelmError(_last_error(self.lib))

    def __enter__(self) -> "_Config":
        return self

    def __exit__(self, *exc: object) -> None:
        self.lib.helm_sdkpy_config_destroy(self.handle)


# ---- lint ---------------------------------------------------------------------

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


@dataclass
class LintMessage:
    severity: str
    path: str


def lint(chart: Path, values: dict[str, Any] | None = None) -> list[LintMessage]:
    """`helm lint` of ``chart``, optionally with ``values`` merged over values.yaml.

    The shim's lint takes no values, so with ``values`` a copy of the chart gets a
    values.yaml with them merged in. The shim serialises Go error values as {},
    so messages carry severity and path only; ``render`` gives the full text.
    """
    with tempfile.TemporaryDirectory(prefix="tether-lint-") as tmp:
        target = chart
        if values:
            target = Path(tmp) / chart.name
            shutil.copytree(chart, target)
            base = yaml.safe_load((chart / "values.yaml").read_text()) or {}
            (target / "values.yaml").write_text(yaml.safe_dump(deep_merge(base, values)))
        with _Config("default", None) as cfg:
            out = ctypes.c_void_p()
            rc = cfg.lib.helm_sdkpy_lint(cfg.handle, str(target).encode(), ctypes.byref(out))
            if rc != 0:
                raise HelmError(_last_error(cfg.lib))
            result = json.loads(_take_string(cfg.lib, out) or "{}")
    return [
        LintMessage(SEVERITY.get(m.get("Severity", 0), "UNKNOWN"), m.get("Path", ""))
        for m in result.get("Messages") or []
    ]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's value coalescing for maps: ``over`` wins, maps merge, lists replace."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# ---- render -------------------------------------------------------------------


@dataclass
class Rendered:
    manifest: str
    objects: list[dict[str, Any]]
    # (method, path) of every write Helm sent, in order.
    writes: list[tuple[str, str]] = field(default_factory=list)
    notes: str = ""


class _ApiStandIn(http.server.BaseHTTPRequestHandler):
    """Discovery plus accept-everything writes, for Helm's install path only."""

    writes: list[tuple[str, str]] = []

    def log_message(self, *args: object) -> None:  # keep the check output clean
        pass

    def _send(self, code: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        path = self.path.split("?", 1)[0]
        if path == "/version":
            major, minor, git = KUBE_VERSION
            return self._send(200, {"major": major, "minor": minor, "gitVersion": git,
                                    "platform": "linux/amd64"})
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                for (g, v) in DISCOVERY if g
            ]
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                    "groups": groups})
        for (g, v), resources in DISCOVERY.items():
            if path == (f"/apis/{g}/{v}" if g else f"/api/{v}"):
                return self._send(200, {
                    "kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": f"{g}/{v}" if g else v,
                    "resources": [
                        {"name": plural, "singularName": kind.lower(), "namespaced": ns,
                         "kind": kind,
                         "verbs": ["create", "delete", "get", "list", "patch", "update",
                                   "watch"]}
                        for plural, kind, ns in resources
                    ],
                })
        return self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "NotFound", "code": 404, "message": "not found"})

    def _write(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.writes.append((self.command, self.path.split("?", 1)[0]))
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", "00000000-0000-0000-0000-000000000000")
        meta.setdefault("resourceVersion", "1")
        self._send(201, body)

    do_POST = _write  # noqa: N815
    do_PUT = _write  # noqa: N815
    do_PATCH = _write  # noqa: N815


def render(
    chart: Path,
    values: dict[str, Any] | None = None,
    release: str = "tether",
    namespace: str = "tether-system",
    test_hooks: bool = False,
    upgrade: bool = False,
) -> Rendered:
    """Render ``chart`` the way `helm install` does, with Helm's own engine.

    Install never renders `helm test` hooks into the manifest (they only run on
    `helm test`, which needs a real cluster to run the pod). With ``test_hooks``
    the copy's templates/tests/* have their ``helm.sh/hook*`` annotations renamed
    to ``hook.stripped.test/hook*``, so
    the same engine renders them as plain objects into the manifest; callers check
    the annotations on the template files themselves.
    """
    writes: list[tuple[str, str]] = []
    handler = type("Handler", (_ApiStandIn,), {"writes": writes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    kubeconfig = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "standin", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "standin", "user": {}}],
        "contexts": [{"name": "standin",
                      "context": {"cluster": "standin", "user": "standin",
                                  "namespace": namespace}}],
        "current-context": "standin",
    })
    try:
        with tempfile.TemporaryDirectory(prefix="tether-render-") as tmp:
            copy = Path(tmp) / chart.name
            shutil.copytree(chart, copy, ignore=shutil.ignore_patterns("crds"))
            tests_dir = copy / "templates" / "tests"
            if test_hooks:
                for t in tests_dir.glob("*.yaml"):
                    lines = t.read_text().splitlines(keepends=True)
                    # helm.sh/hook* -> hook.stripped.test/* (kept visible to the checks).
                    t.write_text("".join(ln.replace("helm.sh/hook", "hook.stripped.test/hook", 1)
                                         for ln in lines))
            options = {
                "create_namespace": False, "wait": False, "timeout_seconds": 60,
                "server_side_apply": "false", "disable_openapi_validation": True,
                "skip_schema_validation": False,
            }
            with _Config(namespace, kubeconfig) as cfg:
                out = ctypes.c_void_p()
                rc = cfg.lib.helm_sdkpy_install(
                    cfg.handle, release.encode(), str(copy).encode(),
                    json.dumps(values).encode() if values else b"", b"",
                    json.dumps(options).encode(), ctypes.byref(out),
                )
                if rc != 0:
                    raise HelmError(_last_error(cfg.lib))
                result = json.loads(_take_string(cfg.lib, out))
                if upgrade:
                    # `helm upgrade` of the release just installed (same store).
                    out = ctypes.c_void_p()
                    rc = cfg.lib.helm_sdkpy_upgrade(
                        cfg.handle, release.encode(), str(copy).encode(),
                        json.dumps(values).encode() if values else b"", b"",
                        json.dumps(options).encode(), ctypes.byref(out),
                    )
                    if rc != 0:
                        raise HelmError(_last_error(cfg.lib))
                    result = json.loads(_take_string(cfg.lib, out))
    finally:
        server.shutdown()
        server.server_close()
    manifest = result.get("manifest", "")
    objects = [d for d in yaml.safe_load_all(manifest) if d]
    notes = (result.get("info") or {}).get("notes", "")
    return Rendered(manifest=manifest, objects=objects, writes=writes, notes=notes)
