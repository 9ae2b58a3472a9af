"""Parsing and decisions behind tests/infra/test_control_plane.py and test_network.py.

Small functions over the text or JSON that kubectl, ipvsadm, nft and the
components' health endpoints print, so the decisions are unit-tested here
without a cluster (tests/unit/test_k8s_checks.py) and the infra suites stay thin.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VirtualServer:
    protocol: str  # TCP | UDP | SCTP
    address: str  # "10.96.0.1:443"
    scheduler: str  # rr, wrr, ...
    real_servers: tuple[str, ...]


def parse_ipvsadm(text: str) -> list[VirtualServer]:
    """`ipvsadm -Ln` -> the virtual servers and their real servers."""
    out: list[VirtualServer] = []
    current: tuple[str, str, str] | None = None
    reals: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^(TCP|UDP|SCTP)\s+(\S+)\s+(\S+)", line)
        if m:
            if current:
                out.append(VirtualServer(*current, tuple(reals)))
            current, reals = (m.group(1), m.group(2), m.group(3)), []
            continue
        m = re.match(r"^\s+->\s+(\S+)\s+(Masq|Route|Tunnel|Local)\b", line)
        if m and current:
            reals.append(m.group(1))
    if current:
        out.append(VirtualServer(*current, tuple(reals)))
    return out


def parse_nft_tables(text: str) -> list[tuple[str, str]]:
    """`nft list tables` -> [(family, name)]."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^table\s+(\S+)\s+(\S+)\s*$", text, re.MULTILINE)]


def proxy_mode_evidence(mode_endpoint: str, ipvs: list[VirtualServer], nft: list[tuple[str, str]],
                        iptables_nat: str) -> dict[str, bool]:
    """Which kube-proxy modes the node shows signs of.

    mode_endpoint: what kube-proxy's metrics server answers on /proxyMode;
    ipvs: `ipvsadm -Ln`; nft: `nft list tables`; iptables_nat: `iptables-save -t nat`.
    """
    reported = mode_endpoint.strip()
    return {
        "ipvs": reported == "ipvs" and len(ipvs) > 0,
        "nftables": reported == "nftables" and ("ip", "kube-proxy") in nft,
        "iptables": reported == "iptables" and ":KUBE-SERVICES" in iptables_nat,
    }


def proxy_mode_problem(expected: str, mode_endpoint: str, ipvs: list[VirtualServer], nft: list[tuple[str, str]],
                       iptables_nat: str) -> str:
    """'' when kube-proxy runs in `expected` mode with the kernel state to show for it, else why not."""
    reported = mode_endpoint.strip() or "(no answer)"
    if reported != expected:
        return f"kube-proxy reports mode {reported!r}, lab.yml says {expected!r}"
    if not proxy_mode_evidence(mode_endpoint, ipvs, nft, iptables_nat)[expected]:
        what = {"ipvs": "no IPVS virtual servers (ipvsadm -Ln is empty: kernel modules ip_vs*?)",
                "nftables": "no nftables table 'ip kube-proxy'",
                "iptables": "no KUBE-SERVICES chain in the nat table"}[expected]
        return f"kube-proxy reports {expected} but the node shows {what}"
    return ""


def _ready(node: dict[str, Any]) -> str:
    for c in node.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c.get("status", "Unknown")
    return "Unknown"


def nodes_not_ready(nodes_json: str | dict[str, Any], expected: list[str]) -> dict[str, str]:
    """{node: reason} for every expected node that is missing or not Ready (`kubectl get nodes -o json`)."""
    data = json.loads(nodes_json) if isinstance(nodes_json, str) else nodes_json
    seen = {n["metadata"]["name"]: n for n in data.get("items", [])}
    out: dict[str, str] = {}
    for name in expected:
        node = seen.get(name)
        if node is None:
            out[name] = "not registered"
            continue
        status = _ready(node)
        if status != "True":
            reasons = [c.get("message", "") for c in node["status"].get("conditions", []) if c.get("type") == "Ready"]
            out[name] = f"Ready={status}" + (f": {reasons[0]}" if reasons and reasons[0] else "")
    return out


def node_internal_ips(nodes_json: str | dict[str, Any]) -> dict[str, str]:
    """{node: InternalIP} -- must be the lab IPs (kubelet node-ip), never a NAT address."""
    data = json.loads(nodes_json) if isinstance(nodes_json, str) else nodes_json
    out: dict[str, str] = {}
    for n in data.get("items", []):
        for a in n.get("status", {}).get("addresses", []):
            if a.get("type") == "InternalIP":
                out[n["metadata"]["name"]] = a["address"]
                break
    return out


def daemonset_problem(ds_json: str | dict[str, Any], expected_nodes: int) -> str:
    """'' when the DaemonSet is scheduled, up to date and ready on `expected_nodes` nodes."""
    ds = json.loads(ds_json) if isinstance(ds_json, str) else ds_json
    st = ds.get("status", {})
    got = {k: st.get(k, 0) for k in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                                     "updatedNumberScheduled", "numberAvailable")}
    if got["desiredNumberScheduled"] != expected_nodes:
        return f"scheduled on {got['desiredNumberScheduled']} nodes, expected {expected_nodes}"
    lagging = [k for k in ("currentNumberScheduled", "numberReady", "updatedNumberScheduled", "numberAvailable")
               if got[k] != expected_nodes]
    return ", ".join(f"{k}={got[k]}" for k in lagging) + (f" of {expected_nodes}" if lagging else "")


def failed_health_checks(verbose: str) -> list[str]:
    """Names of the failing checks in an apiserver `/livez?verbose` or `/readyz?verbose` answer."""
    failed = re.findall(r"^\[-\](\S+)", verbose, re.MULTILINE)
    if not failed and not re.search(r"^(livez|readyz|healthz) check passed\s*$", verbose, re.MULTILINE):
        return ["(no 'check passed' line in the answer)"]
    return failed


def etcd_healthy(health_json: str) -> bool:
    """etcd's /health answer: {"health":"true","reason":""}."""
    try:
        return json.loads(health_json).get("health") == "true"
    except (ValueError, AttributeError):
        return False


def serving_cert_issuer_ok(issuer: str, node: str) -> bool:
    """`openssl x509 -noout -issuer` of the kubelet serving certificate names the cluster CA.

    A kubelet without an approved CSR serves a self-signed certificate whose
    issuer is '<node>-ca@<timestamp>'; the cluster CA of kubeadm is CN=kubernetes.
    """
    cn = re.search(r"CN\s*=\s*([^,/\n]+)", issuer)
    return bool(cn) and cn.group(1).strip() == "kubernetes" and not cn.group(1).startswith(f"{node}-ca@")


def resolved_addresses(nslookup_output: str) -> list[str]:
    """IPv4 addresses of the answer section of busybox/bind `nslookup` output (the server's own line skipped)."""
    text = nslookup_output.split("Name:", 1)
    if len(text) < 2:
        return []
    return re.findall(r"Address(?:\s+\d+)?:\s*(\d+\.\d+\.\d+\.\d+)", text[1])


def ping_ok(ping_output: str) -> bool:
    """busybox/iputils ping: at least one reply received."""
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", ping_output)
    return bool(m) and int(m.group(2)) > 0


def deployment_available(deployment_json: str) -> bool:
    """`kubectl get deployment -o json`: the Available condition is True and a replica is available."""
    try:
        d = json.loads(deployment_json)
    except ValueError:
        return False
    status = d.get("status") or {}
    available = any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or [])
    return available and (status.get("availableReplicas") or 0) >= 1


def csr_decisions(csr_list_json: str) -> dict[str, tuple[str, str]]:
    """`kubectl get csr -o json` (a list or one object) -> {name: (decision condition type, its reason)};
    ("", "") for an undecided CSR."""
    try:
        doc = json.loads(csr_list_json)
    except ValueError:
        return {}
    items = doc.get("items", [doc]) if isinstance(doc, dict) else []
    out = {}
    for item in items:
        conds = [c for c in (item.get("status") or {}).get("conditions") or []
                 if c.get("type") in ("Approved", "Denied", "Failed")]
        name = (item.get("metadata") or {}).get("name", "?")
        out[name] = (conds[-1].get("type", ""), conds[-1].get("reason", "")) if conds else ("", "")
    return out
