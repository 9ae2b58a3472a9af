"""Pod network of a real lab: nodes Ready, flannel on every node, pod-to-pod across nodes, CoreDNS.

Run by `labctl verify` (needs the network phase). A probe DaemonSet (the
mirrored flannel image, which carries busybox's ping and nslookup) runs one pod
per node in a namespace of its own, removed afterwards. Decisions live in
labctl/verify/k8s_checks.py (unit-tested in tests/unit/test_k8s_checks.py).
"""

from __future__ import annotations

import ipaddress
import json
import shlex

import pytest
from _check import expect, output
from _lab import node_host

from labctl.verify import k8s_checks

testinfra_hosts = ["ansible://control_plane"]

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
PROBE_NS = "labctl-netcheck"


def _k8s_nodes(lab_nodes: list[dict]) -> list[dict]:
    return [n for n in lab_nodes if n["role"] != "registry"]


@pytest.fixture(scope="module")
def cp(lab_nodes):
    first = next(n["name"] for n in lab_nodes if n["role"] == "control-plane")
    return node_host(first)


def test_every_node_ready(cp, lab_nodes):
    out = cp.run(f"{KUBECTL} get nodes -o json")
    problems = k8s_checks.nodes_not_ready(out.stdout, [n["name"] for n in _k8s_nodes(lab_nodes)]) if out.rc == 0 \
        else {"(all)": "kubectl get nodes failed"}
    expect(problems, {}, "every node is Ready", detail=output(out))


def test_flannel_ready_on_every_node(cp, lab_nodes):
    out = cp.run(f"{KUBECTL} -n kube-flannel get daemonset kube-flannel-ds -o json")
    problem = k8s_checks.daemonset_problem(out.stdout, len(_k8s_nodes(lab_nodes))) if out.rc == 0 else "not found"
    expect(problem, "", "the flannel DaemonSet is ready on every node", detail=output(out))


def _probe_image(lab_vars: dict) -> str:
    img = next(i for i in lab_vars["lab_images"] if "/flannel-io/flannel:" in i["source"])
    return img["mirror"] or img["source"]


def _probe_manifest(image: str) -> str:
    pod = {
        "tolerations": [{"operator": "Exists"}],
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "probe", "image": image, "command": ["sleep", "3600"],
                        "securityContext": {"allowPrivilegeEscalation": False}}],
    }
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROBE_NS}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "probe", "namespace": PROBE_NS},
         "spec": {"selector": {"matchLabels": {"app": "labctl-probe"}},
                  "template": {"metadata": {"labels": {"app": "labctl-probe"}}, "spec": pod}}},
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


@pytest.fixture(scope="module")
def probes(cp, lab_vars, lab_nodes):
    """{node: (pod name, pod IP)} of one probe pod per node; removed after the module."""
    manifest = _probe_manifest(_probe_image(lab_vars))
    cp.run(f"echo {shlex.quote(manifest)} | {KUBECTL} apply -f -")
    try:
        rollout = cp.run(f"{KUBECTL} -n {PROBE_NS} rollout status daemonset/probe --timeout=120s")
        pods = cp.run(f"{KUBECTL} -n {PROBE_NS} get pods -o json")
        found = {}
        for p in json.loads(pods.stdout or "{}").get("items", []):
            node = p["spec"].get("nodeName")
            if p.get("status", {}).get("podIP"):
                found[node] = (p["metadata"]["name"], p["status"]["podIP"])
        expect(sorted(found), sorted(n["name"] for n in _k8s_nodes(lab_nodes)),
               "a probe pod runs on every node", detail=output(rollout))
        yield found
    finally:
        cp.run(f"{KUBECTL} delete namespace {PROBE_NS} --wait=false")


def test_pod_to_pod_across_nodes(cp, probes):
    failures = {}
    nodes = sorted(probes)
    for src in nodes:
        for dst in nodes:
            if src == dst:
                continue
            pod, _ = probes[src]
            ip = probes[dst][1]
            out = cp.run(f"{KUBECTL} -n {PROBE_NS} exec {pod} -- ping -c 2 -W 2 {ip}")
            if not k8s_checks.ping_ok(out.stdout):
                failures[f"{src} -> {dst} ({ip})"] = (out.stdout + out.stderr).strip()[-200:]
    expect(failures, {}, "pods reach pods on every other node (flannel VXLAN)")


@pytest.mark.parametrize("name,offset", [("kubernetes.default", 1), ("kube-dns.kube-system", 10)])
def test_coredns_resolves(cp, probes, lab_vars, name, offset):
    fqdn = f"{name}.svc.{lab_vars['lab_dns_domain']}"
    wanted = str(ipaddress.ip_network(lab_vars["lab_service_subnet"]).network_address + offset)
    pod = next(iter(probes.values()))[0]
    out = cp.run(f"{KUBECTL} -n {PROBE_NS} exec {pod} -- nslookup {fqdn}")
    expect(k8s_checks.resolved_addresses(out.stdout), [wanted], f"CoreDNS resolves {fqdn}", detail=output(out))
