"""labctl.verify.k8s_checks: the parsing behind tests/infra, on samples written from the tools' documented formats."""

from __future__ import annotations

import json

import pytest

from labctl.verify import k8s_checks as kc

IPVSADM = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.254.0.1:443 rr
  -> 192.168.56.21:6443           Masq    1      3          0
TCP  10.254.0.10:53 rr
  -> 10.244.0.2:53                Masq    1      0          0
  -> 10.244.0.3:53                Masq    1      0          0
UDP  10.254.0.10:53 rr
  -> 10.244.0.2:53                Masq    1      0          4
"""
IPVSADM_EMPTY = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
"""
NFT = "table inet filter\ntable ip kube-proxy\ntable ip6 kube-proxy\ntable ip flannel\n"
IPTABLES_NAT = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"


def test_parse_ipvsadm():
    servers = kc.parse_ipvsadm(IPVSADM)
    assert [(s.protocol, s.address, s.scheduler) for s in servers] == [
        ("TCP", "10.254.0.1:443", "rr"), ("TCP", "10.254.0.10:53", "rr"), ("UDP", "10.254.0.10:53", "rr")]
    assert servers[1].real_servers == ("10.244.0.2:53", "10.244.0.3:53")
    assert kc.parse_ipvsadm(IPVSADM_EMPTY) == []


def test_parse_nft_tables():
    assert kc.parse_nft_tables(NFT) == [("inet", "filter"), ("ip", "kube-proxy"), ("ip6", "kube-proxy"), ("ip", "flannel")]


@pytest.mark.parametrize("expected,mode,ipvs,nft,nat,problem", [
    ("ipvs", "ipvs", IPVSADM, "", "", ""),
    # the course's pitfall: ipvs configured, modules missing -> no virtual servers
    ("ipvs", "ipvs", IPVSADM_EMPTY, "", "", "no IPVS virtual servers"),
    ("ipvs", "iptables", "", "", IPTABLES_NAT, "kube-proxy reports mode 'iptables', lab.yml says 'ipvs'"),
    ("nftables", "nftables", "", NFT, "", ""),
    ("nftables", "nftables", "", "table inet filter\n", "", "no nftables table 'ip kube-proxy'"),
    ("iptables", "iptables\n", "", "", IPTABLES_NAT, ""),
    ("iptables", "", "", "", "", "kube-proxy reports mode '(no answer)'"),
])
def test_proxy_mode_problem(expected, mode, ipvs, nft, nat, problem):
    found = kc.proxy_mode_problem(expected, mode, kc.parse_ipvsadm(ipvs), kc.parse_nft_tables(nft), nat)
    assert (found == "") if problem == "" else (problem in found), found


def _node(name: str, ready: str, ip: str, message: str = "") -> dict:
    return {"metadata": {"name": name},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": ready, "message": message}],
                       "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}}


NODES = {"apiVersion": "v1", "kind": "List", "items": [
    _node("master", "True", "192.168.56.21"),
    _node("node1", "False", "10.0.2.15", "container runtime network not ready: cni plugin not initialized"),
]}


def test_nodes_not_ready():
    problems = kc.nodes_not_ready(json.dumps(NODES), ["master", "node1", "node2"])
    assert problems == {"node1": "Ready=False: container runtime network not ready: cni plugin not initialized",
                        "node2": "not registered"}
    assert kc.nodes_not_ready(NODES, ["master"]) == {}


def test_node_internal_ips_show_a_nat_address():
    assert kc.node_internal_ips(NODES) == {"master": "192.168.56.21", "node1": "10.0.2.15"}


def _ds(desired, current, ready, updated, available):
    return {"status": {"desiredNumberScheduled": desired, "currentNumberScheduled": current, "numberReady": ready,
                       "updatedNumberScheduled": updated, "numberAvailable": available}}


def test_daemonset_problem():
    assert kc.daemonset_problem(json.dumps(_ds(3, 3, 3, 3, 3)), 3) == ""
    assert kc.daemonset_problem(_ds(3, 3, 2, 3, 2), 3) == "numberReady=2, numberAvailable=2 of 3"
    assert kc.daemonset_problem(_ds(2, 2, 2, 2, 2), 3) == "scheduled on 2 nodes, expected 3"


LIVEZ_OK = "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]poststarthook/start-apiextensions-informers ok\nlivez check passed\n"
READYZ_BAD = "[+]ping ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\nreadyz check failed\n"


def test_failed_health_checks():
    assert kc.failed_health_checks(LIVEZ_OK) == []
    assert kc.failed_health_checks(READYZ_BAD) == ["etcd"]
    assert kc.failed_health_checks("") == ["(no 'check passed' line in the answer)"]


@pytest.mark.parametrize("answer,ok", [
    ('{"health":"true","reason":""}', True),
    ('{"health":"false","reason":"RAFT NO LEADER"}', False),
    ("", False),
    ("404 page not found", False),
])
def test_etcd_healthy(answer, ok):
    assert kc.etcd_healthy(answer) is ok


@pytest.mark.parametrize("issuer,ok", [
    ("issuer=CN = kubernetes", True),
    ("issuer=CN=kubernetes", True),
    ("issuer=CN = node1-ca@1763776000", False),  # self-signed: no CSR approved
    ("", False),
])
def test_serving_cert_issuer(issuer, ok):
    assert kc.serving_cert_issuer_ok(issuer, "node1") is ok


BUSYBOX_NSLOOKUP = """\
Server:		10.254.0.10
Address:	10.254.0.10:53

Name:	kubernetes.default.svc.cluster.local
Address: 10.254.0.1
"""
BIND_NSLOOKUP = """\
Server:		10.254.0.10
Address:	10.254.0.10#53

Name:	kube-dns.kube-system.svc.cluster.local
Address: 10.254.0.10
"""
NXDOMAIN = "Server:\t\t10.254.0.10\nAddress:\t10.254.0.10:53\n\n** server can't find nope.svc.cluster.local: NXDOMAIN\n"


def test_resolved_addresses():
    assert kc.resolved_addresses(BUSYBOX_NSLOOKUP) == ["10.254.0.1"]
    assert kc.resolved_addresses(BIND_NSLOOKUP) == ["10.254.0.10"]
    assert kc.resolved_addresses(NXDOMAIN) == []


def test_ping_ok():
    assert kc.ping_ok("2 packets transmitted, 2 packets received, 0% packet loss")  # busybox
    assert kc.ping_ok("2 packets transmitted, 1 received, 50% packet loss, time 1001ms")  # iputils
    assert not kc.ping_ok("2 packets transmitted, 0 packets received, 100% packet loss")
    assert not kc.ping_ok("ping: bad address")
