"""Control plane of a real lab: API server, scheduler, controller-manager, etcd, kubelets, kube-proxy mode.

Run by `labctl verify` against the lab's VMs or machines (needs the control-plane,
join and network phases). The decisions live in labctl/verify/k8s_checks.py and are
unit-tested in tests/unit/test_k8s_checks.py.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
from _check import check, expect, output
from _lab import node_host

from labctl.verify import k8s_checks

testinfra_hosts = ["ansible://k8s_cluster"]

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
APPROVER = "labctl-csr-approver"  # roles/csr_approver: its Deployment in kube-system


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


def test_kubelets_serve_a_certificate_of_the_cluster_ca(cp, lab_nodes):
    """What kubectl logs/exec and metrics-server need: each kubelet's :10250 verifies against the cluster CA
    for the node's lab IP (the certificate it serves now, whoever approved it)."""
    problems = {}
    for n in (n for n in lab_nodes if n["role"] != "registry"):
        out = cp.run(f"openssl s_client -connect {n['ip']}:10250 -CAfile /etc/kubernetes/pki/ca.crt "
                     f"-verify_return_error -verify_ip {n['ip']} </dev/null 2>&1")
        if out.rc != 0 or "Verify return code: 0 (ok)" not in out.stdout:
            lines = [ln.strip() for ln in out.stdout.splitlines() if "verify" in ln.lower() or "error" in ln.lower()]
            problems[n["name"]] = "; ".join(lines[:3]) or f"rc={out.rc}"
    expect(problems, {}, "every kubelet serves a certificate of the cluster CA for its lab IP (serving CSR approved)",
           node=_name(cp))


def _skip_without_approver(lab_vars) -> None:
    why = lab_vars.get("lab_csr_approver_unavailable", "")
    if why:
        pytest.skip(f"no in-cluster CSR approver in this lab: {why}")


def test_csr_approver_available(cp, lab_vars):
    _skip_without_approver(lab_vars)
    out = cp.run(f"{KUBECTL} -n kube-system get deployment {APPROVER} -o json")
    check(out.rc == 0 and k8s_checks.deployment_available(out.stdout),
          "the in-cluster kubelet serving CSR approver is available (kube-system deployment labctl-csr-approver)",
          expected="Available=True, 1 replica available", found=(out.stdout[-200:] or out.stderr).strip(),
          node=_name(cp), detail=lambda: output(cp.run(f"{KUBECTL} -n kube-system logs deployment/{APPROVER} --tail=20")))


def _node_csr(name: str, node: str, dns: str, ip: str) -> str:
    """Shell on `node`: a kubelet-serving CSR named `name`, created with the kubelet's own credentials
    (so its requester is system:node:<node>), its key thrown away."""
    obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "labctl-verify"}},
           "spec": {"signerName": "kubernetes.io/kubelet-serving", "usages": ["digital signature", "server auth"],
                    "request": "@REQUEST@"}}
    template = shlex.quote(json.dumps(obj))
    return (f'd=$(mktemp -d) && trap \'rm -rf "$d"\' EXIT && '
            f'openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$d/key" '
            f'-subj {shlex.quote(f"/O=system:nodes/CN=system:node:{node}")} '
            f'-addext {shlex.quote(f"subjectAltName=DNS:{dns},IP:{ip}")} -out "$d/req" 2>/dev/null && '
            f'printf %s {template} | sed "s|@REQUEST@|$(base64 -w0 "$d/req")|" | '
            f'kubectl --kubeconfig /etc/kubernetes/kubelet.conf create -f -')


def test_csr_approver_decides_new_serving_csrs(cp, lab_vars, lab_nodes):
    """A rotation, as the approver sees it: a new serving CSR from the control plane's kubelet identity is
    approved by the pod (reason LabctlApproved, not `labctl provision`), a forged one (a foreign IP) denied."""
    _skip_without_approver(lab_vars)
    me = _name(cp)
    ip = next(n["ip"] for n in lab_nodes if n["name"] == me)
    stamp = int(time.time())
    good, forged = f"labctl-verify-serving-{stamp}", f"labctl-verify-forged-{stamp}"
    made = [cp.run(_node_csr(good, me, me, ip)), cp.run(_node_csr(forged, me, me, "192.0.2.1"))]
    try:
        check(all(m.rc == 0 for m in made), "a serving CSR can be created with the kubelet's credentials",
              expected="created", found="; ".join((m.stdout + m.stderr).strip() for m in made), node=me)
        wait = 2 * 30 + 15  # two of the approver's passes (csr_approver_interval) and the API's latency
        deadline = time.monotonic() + wait
        found: dict = {}
        while time.monotonic() < deadline:
            out = cp.run(f"{KUBECTL} get csr {good} {forged} -o json")
            found = k8s_checks.csr_decisions(out.stdout) if out.rc == 0 else {}
            if all(found.get(n, ("", ""))[0] for n in (good, forged)):
                break
            time.sleep(3)
        expect({good: found.get(good), forged: found.get(forged)},
               {good: ("Approved", "LabctlApproved"), forged: ("Denied", "LabctlDenied")},
               f"the in-cluster approver decides new kubelet serving CSRs within {wait}s", node=me,
               detail=lambda: output(cp.run(f"{KUBECTL} -n kube-system logs deployment/{APPROVER} --tail=20")))
    finally:
        cp.run(f"{KUBECTL} delete csr {good} {forged} --ignore-not-found")
