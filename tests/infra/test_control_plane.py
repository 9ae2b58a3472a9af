"""Control plane of a real lab: API server, scheduler, controller-manager, etcd, kubelets, kube-proxy mode.

Run by `labctl verify` against the lab's VMs or machines (needs the control-plane,
join and network phases). The decisions live in labctl/k8s_checks.py and are
unit-tested in tests/unit/test_k8s_checks.py.
"""

from __future__ import annotations

import pytest
from _check import check, expect, output
from _lab import node_host

from labctl import k8s_checks

testinfra_hosts = ["ansible://k8s_cluster"]

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"


def _name(host) -> str:
    """The inventory name of a testinfra host."""
    return host.ansible.get_variables()["inventory_hostname"]


def _control_planes(lab_nodes: list[dict]) -> list[str]:
    return [n["name"] for n in lab_nodes if n["role"] == "control-plane"]


@pytest.fixture(scope="module")
def cp(lab_nodes):
    """The first control-plane node, where kubectl runs with admin.conf."""
    return node_host(_control_planes(lab_nodes)[0])


@pytest.mark.parametrize("endpoint", ["/livez", "/readyz"])
def test_apiserver_health(cp, endpoint):
    out = cp.run(f"{KUBECTL} get --raw '{endpoint}?verbose'")
    failed = k8s_checks.failed_health_checks(out.stdout) if out.rc == 0 else ["(kubectl failed)"]
    expect(failed, [], f"API server {endpoint} checks pass", node=_name(cp), detail=output(out))


def test_scheduler_and_controller_manager_healthy(lab_nodes):
    problems = {}
    for name in _control_planes(lab_nodes):
        h = node_host(name)
        for component, port in (("kube-scheduler", 10259), ("kube-controller-manager", 10257)):
            out = h.run(f"curl -sk --max-time 5 https://127.0.0.1:{port}/healthz")
            if out.stdout.strip() != "ok":
                problems[f"{name}/{component}"] = (out.stdout + out.stderr).strip() or f"rc={out.rc}"
    expect(problems, {}, "scheduler and controller-manager /healthz answer ok on every control plane")


def test_etcd_healthy(lab_nodes):
    problems = {}
    for name in _control_planes(lab_nodes):
        out = node_host(name).run("curl -s --max-time 5 http://127.0.0.1:2381/health")
        if not k8s_checks.etcd_healthy(out.stdout):
            problems[name] = (out.stdout + out.stderr).strip() or f"rc={out.rc}"
    expect(problems, {}, "etcd /health is true on every control plane (metrics listener :2381)")


def test_kubelet_active(host):
    svc = host.service("kubelet")
    journal = "" if svc.is_running else host.run("journalctl -u kubelet -n 20 --no-pager").stdout
    check(svc.is_running and svc.is_enabled, "kubelet is running and enabled",
          expected="running, enabled", found=f"running={svc.is_running}, enabled={svc.is_enabled}", detail=journal)


def test_kube_proxy_mode_in_use(host, lab_vars):
    expected = lab_vars["lab_proxy_mode"]
    mode = host.run("curl -s --max-time 5 http://127.0.0.1:10249/proxyMode").stdout
    ipvs = k8s_checks.parse_ipvsadm(host.run("ipvsadm -Ln 2>/dev/null").stdout) if expected == "ipvs" else []
    nft = k8s_checks.parse_nft_tables(host.run("nft list tables 2>/dev/null").stdout) if expected == "nftables" else []
    nat = host.run("iptables-save -t nat 2>/dev/null").stdout if expected == "iptables" else ""
    problem = k8s_checks.proxy_mode_problem(expected, mode, ipvs, nft, nat)
    expect(problem, "", f"kube-proxy runs in {expected} mode (lab.yml kubernetes.proxy_mode)",
           detail=f"/proxyMode: {mode!r}; ipvs servers: {len(ipvs)}; nft tables: {nft}")


def test_kubelet_serving_certificate_issued(host):
    out = host.run("openssl x509 -noout -issuer -in /var/lib/kubelet/pki/kubelet-server-current.pem")
    check(out.rc == 0 and k8s_checks.serving_cert_issuer_ok(out.stdout, _name(host)),
          "the kubelet serving certificate is signed by the cluster CA (serverTLSBootstrap, CSR approved)",
          expected="issuer CN=kubernetes", found=(out.stdout or out.stderr).strip())


def test_nodes_use_their_lab_ip(cp, lab_nodes):
    out = cp.run(f"{KUBECTL} get nodes -o json")
    found = k8s_checks.node_internal_ips(out.stdout) if out.rc == 0 else {}
    wanted = {n["name"]: n["ip"] for n in lab_nodes if n["role"] != "registry"}
    expect(found, wanted, "every node's InternalIP is its lab IP (never a NAT address)", node=_name(cp), detail=output(out))
