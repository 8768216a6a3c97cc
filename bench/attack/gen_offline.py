#!/usr/bin/env python3
"""Generates the offline attack inputs of issue 13 into a directory (argument 1).

nested.yaml       200 KB of flow nesting (`a: [[[[...]]]]`), for `tether check`
rbac-wide.yaml    ~580 KB: one aggregated ClusterRole selecting 2,500 ClusterRoles of 2 rules
rbac-chain.yaml   ~580 KB: 1,500 aggregated ClusterRoles, each selecting the next, named so
                  that the aggregation controller's (sorted) order is the worst one, plus a
                  leaf with 200 rules at the end of the chain
rbac-nested.yaml  200 KB of flow nesting in an RBAC file (`serve --rbac-file` start-up)
review-30mb.json  a 30 MB AdmissionReview (a ConfigMap with one huge annotation), for
                  `tether review`
"""
import json
import os
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
HDR = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"


def write(name, text):
    with open(os.path.join(out, name), "w") as f:
        f.write(text)


d = 100_000
write("nested.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: " + "[" * d + "]" * d + "}\n")
write("rbac-nested.yaml", HDR + "metadata: {name: x}\nrules: " + "[" * d + "]" * d + "\n")

docs = [HDR + "metadata: {name: agg}\naggregationRule: {clusterRoleSelectors: [{matchLabels: {agg: 'true'}}]}\nrules: []\n"]
for i in range(2500):
    docs.append(
        HDR + f"metadata: {{name: leaf-{i:05}, labels: {{agg: 'true'}}}}\nrules:\n"
        f"- {{apiGroups: [g{i}.example.com], resources: [r{i}], verbs: [get, list]}}\n"
        f"- {{apiGroups: [g{i}.example.com], resources: [s{i}], verbs: [create]}}\n"
    )
docs.append(
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\n"
    "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: agg}\n"
    "subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]\n"
)
write("rbac-wide.yaml", "---\n".join(docs))

n = 1500
docs = []
for i in range(n):
    # c-00000 selects level 1, ..., c-01499 selects the leaf; sorted order visits the head
    # of the chain first, so a fixed-point loop needs one pass per link.
    docs.append(
        HDR + f"metadata: {{name: c-{i:05}, labels: {{level: 'l{i}'}}}}\n"
        f"aggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{level: 'l{i + 1}'}}}}]}}\nrules: []\n"
    )
rules = "".join(f"- {{apiGroups: [g{j}.example.com], resources: [r{j}], verbs: [get]}}\n" for j in range(200))
docs.append(HDR + f"metadata: {{name: leaf, labels: {{level: 'l{n}'}}}}\nrules:\n{rules}")
write("rbac-chain.yaml", "---\n".join(docs))

review = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "big",
        "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "name": "c",
        "namespace": "default",
        "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {"a": "x" * (30 * 1024 * 1024)}},
        },
    },
}
write("review-30mb.json", json.dumps(review))
for name in sorted(os.listdir(out)):
    print(f"{name}: {os.path.getsize(os.path.join(out, name))} bytes")
