"""Layer `host` (phase host): every node's name, /etc/hosts, swap, kernel settings, the lab CA
in its trust store and the firewall state lab.yml asks for (docs/course.md §1).

In a container the kernel is the host's: modules cannot be loaded and swap cannot be turned
off from inside. Those checks are skipped there with that reason; the files that make them
hold on a VM (modules-load.d, fstab, swap.target) are checked everywhere.

Every check here only reads: they read the node's snapshot (`snap`, _snapshot.py), whose
commands `snapshot_reads` lists.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _check import check, expect, output
from _lab import facts, group_vars
from _snapshot import SYSTEM_INFO, file_reads, q, service_reads

testinfra_hosts = ["ansible://all"]


GV = group_vars()
NODES = GV.get("lab_nodes", [])
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}
BASE_MODULES = ["overlay", "br_netfilter"]
IPVS_MODULES = ["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"]
# What `host.firewall: ports` opens, per group (the firewall role's table, roles/firewall/defaults/main.yml:
# node-exporter, kube-proxy metrics and health and the kubelet on every node, etcd metrics on control planes).
FIREWALL_PORTS = {
    "k8s_cluster": {"8472/udp", "10250/tcp", "10249/tcp", "10256/tcp", "9100/tcp"},
    "control_plane": {"6443/tcp", "2379-2380/tcp", "2381/tcp", "10257/tcp", "10259/tcp"},
    "workers": {"30000-32767/tcp", "30000-32767/udp"},
    "registry": {f"{facts().registry.port}/tcp"},
}
TRUSTED_INTERFACES = {"cni0", "flannel.1"}
TRUST_STORES = {  # os family -> (anchor directory, bundle the anchors end up in)
    "debian": ("/usr/local/share/ca-certificates", "/etc/ssl/certs/ca-certificates.crt"),
    "redhat": ("/etc/pki/ca-trust/source/anchors", "/etc/pki/tls/certs/ca-bundle.crt"),
}


def _modules() -> list[str]:
    return BASE_MODULES + (IPVS_MODULES if GV.get("lab_proxy_mode") == "ipvs" else [])


FIREWALL_READS = ["systemctl is-active firewalld; systemctl is-enabled firewalld",
                  "firewall-cmd --zone=public --list-ports", "firewall-cmd --zone=public --query-masquerade",
                  "firewall-cmd --zone=trusted --list-interfaces"]


def snapshot_reads(node: dict) -> list[str]:
    """The commands the checks below run on every node (read once, _snapshot.py)."""
    reads = ["hostname", "systemd-detect-virt --container", "systemctl is-enabled swap.target", "cat /proc/modules",
             *file_reads("/etc/hosts"), *(f"getent ahostsv4 {n['name']}" for n in NODES),
             *file_reads("/etc/fstab"), *file_reads("/proc/swaps"),
             *file_reads("/etc/sysctl.d/k8s.conf", "exists", "content"), *(f"sysctl -n {key}" for key in SYSCTLS),
             *file_reads("/etc/modules-load.d/k8s.conf", "exists", "content"),
             *(q("test -e %s", f"/sys/module/{m}") for m in _modules()), *SYSTEM_INFO]
    for anchors, bundle in TRUST_STORES.values():
        reads += [*file_reads(f"{anchors}/labctl-{GV.get('lab_name')}-ca.crt", "exists", "content"),
                  *file_reads(bundle)]
    if GV.get("lab_firewall", "disabled") == "disabled":
        return reads + [*service_reads("firewalld"), *service_reads("ufw")]
    return reads + [*service_reads("firewalld"), *FIREWALL_READS]


def _variables(host) -> dict:
    return host.ansible.get_variables()


def _container(host) -> str:
    """The container type this node runs in ('' on a VM or bare metal)."""
    return host.run("systemd-detect-virt --container").stdout.strip().replace("none", "")


def _family(host) -> str:
    dist = host.system_info.distribution
    return "debian" if dist in ("debian", "ubuntu") else "redhat"


def test_hostname(host, snap):
    name = _variables(host)["inventory_hostname"]
    out = snap.run("hostname")
    expect(out.stdout.strip(), name, "the node's host name is its lab name", detail=output(out))


@pytest.mark.parametrize("node", NODES, ids=[n["name"] for n in NODES])
def test_hosts_file_lists_node(snap, node):
    hosts = snap.file("/etc/hosts").content_string
    lines = [ln.split() for ln in hosts.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    check(any(ln[0] == node["ip"] and node["name"] in ln[1:] for ln in lines),
          f"/etc/hosts maps {node['name']} to {node['ip']}", expected=f"{node['ip']} {node['name']}",
          found="no such line", detail=hosts)
    # the first answer is the one ssh, kubeadm and the kubelet use: the lab address, never 127.0.1.1
    # (Debian/Ubuntu) or the provider's address (Docker's bridge in a container)
    out = snap.run(f"getent ahostsv4 {node['name']}")
    first = out.stdout.split()[0] if out.stdout.split() else "nothing"
    check(out.rc == 0 and first == node["ip"], f"{node['name']} resolves to {node['ip']} first",
          expected=node["ip"], found=first, detail=output(out))


def test_swap_off_at_boot(snap):
    fstab = snap.file("/etc/fstab").content_string
    active = [ln for ln in fstab.splitlines() if ln.split()[2:3] == ["swap"] and not ln.lstrip().startswith("#")]
    expect(active, [], "no active swap line in /etc/fstab", detail=fstab)
    out = snap.run("systemctl is-enabled swap.target")
    expect(out.stdout.strip(), "masked", "swap.target is masked", detail=output(out))


def test_swap_off_now(snap):
    swaps = snap.file("/proc/swaps").content_string.strip().splitlines()[1:]
    container = _container(snap)
    if swaps and container:
        pytest.skip(f"{container} container: the swap in use ({len(swaps)} device(s)) is the host kernel's; "
                    "swap off at boot is checked by test_swap_off_at_boot")
    expect(swaps, [], "no swap in use (/proc/swaps)")


def test_sysctl_file(snap):
    f = snap.file("/etc/sysctl.d/k8s.conf")
    check(f.exists, "/etc/sysctl.d/k8s.conf exists", expected="a file", found="missing")
    found = {k.strip(): v.strip() for k, _, v in (ln.partition("=") for ln in f.content_string.splitlines())
             if k.strip() and not k.strip().startswith("#")}
    expect({k: found.get(k) for k in SYSCTLS}, SYSCTLS, "/etc/sysctl.d/k8s.conf sets the Kubernetes sysctls",
           detail=f.content_string)


@pytest.mark.parametrize("key", list(SYSCTLS))
def test_sysctl_live(snap, key):
    out = snap.run(f"sysctl -n {key}")
    if out.rc != 0 and key.startswith("net.bridge.") and _container(snap):
        pytest.skip(f"{key} does not exist in this container: the host kernel has no br_netfilter "
                    "and a container cannot load it")
    expect(out.stdout.strip(), SYSCTLS[key], f"{key} is applied", detail=output(out))


def test_modules_load_file(snap):
    f = snap.file("/etc/modules-load.d/k8s.conf")
    check(f.exists, "/etc/modules-load.d/k8s.conf exists", expected="a file", found="missing")
    listed = [ln.strip() for ln in f.content_string.splitlines() if ln.strip() and not ln.startswith("#")]
    expect(sorted(listed), sorted(_modules()), "modules-load.d lists the modules Kubernetes needs",
           detail=f.content_string)


def test_modules_loaded(snap):
    container = _container(snap)
    if container:
        pytest.skip(f"{container} container: kernel modules ({', '.join(_modules())}) are the host's and cannot be "
                    "loaded from inside; /etc/modules-load.d/k8s.conf is checked instead")
    missing = [m for m in _modules() if not snap.file(f"/sys/module/{m}").exists]
    expect(missing, [], "the kernel modules Kubernetes needs are loaded (every missing one listed)",
           detail=snap.run("cat /proc/modules").stdout)


def test_ipvs_tools(host):
    if GV.get("lab_proxy_mode") != "ipvs":
        pytest.skip(f"kubernetes.proxy_mode is {GV.get('lab_proxy_mode')}: IPVS tools not needed")
    missing = [p for p in ("ipvsadm", "ipset") if not host.package(p).is_installed]
    expect(missing, [], "ipvsadm and ipset are installed")


def test_lab_ca_in_trust_store(snap):
    ca = Path(GV["lab_state_dir"]) / "ca.crt"
    pem = ca.read_text().strip()
    anchors, bundle = TRUST_STORES[_family(snap)]
    anchor = snap.file(f"{anchors}/labctl-{GV['lab_name']}-ca.crt")
    check(anchor.exists, "the lab CA is installed as a trust anchor", expected=anchor.path, found="missing")
    expect(anchor.content_string.strip(), pem, "the trust anchor is the lab's CA", detail=f"controller copy: {ca}")
    body = "".join(pem.splitlines()[1:-1])
    check(body in "".join(snap.file(bundle).content_string.splitlines()), "the lab CA is in the system bundle",
          expected=f"in {bundle}", found="absent (update-ca-certificates / update-ca-trust not run?)")


def test_firewall_state(host, snap):
    mode = GV.get("lab_firewall", "disabled")
    groups = set(_variables(host)["group_names"]) | ({"k8s_cluster"} if {"control_plane", "workers"}
                                                     & set(_variables(host)["group_names"]) else set())
    firewalld = snap.service("firewalld")
    if mode == "disabled":
        for name in ("firewalld", "ufw"):
            svc = snap.service(name)
            running = snap.run(f"systemctl is-active {name}")
            expect(running.stdout.strip() in ("inactive", "failed", "unknown", ""), True,
                   f"{name} is not running (host.firewall: disabled)", detail=output(running))
            check(not svc.is_enabled, f"{name} is not enabled at boot", expected="disabled or not installed",
                  found="enabled")
        return
    check(firewalld.is_running and firewalld.is_enabled, "firewalld runs and starts at boot (host.firewall: ports)",
          expected="active, enabled", found=snap.run("systemctl is-active firewalld; systemctl is-enabled firewalld")
          .stdout.split())
    if "control_plane" in groups and not any(n["role"] == "worker" for n in NODES):
        groups.add("workers")  # a lab without workers runs the NodePorts on its untainted control plane
    want = set().union(*(FIREWALL_PORTS[g] for g in groups if g in FIREWALL_PORTS))
    out = snap.run("firewall-cmd --zone=public --list-ports")
    ssh_port = str(_variables(host).get("ansible_port", 22))
    expect(set(out.stdout.split()) - {f"{ssh_port}/tcp"}, want, "the public zone opens exactly the Kubernetes ports",
           detail=output(out))
    masq = snap.run("firewall-cmd --zone=public --query-masquerade")
    expect(masq.stdout.strip(), "yes", "masquerade is on in the public zone", detail=output(masq))
    trusted = snap.run("firewall-cmd --zone=trusted --list-interfaces")
    check(TRUSTED_INTERFACES <= set(trusted.stdout.split()), "cni0 and flannel.1 are in the trusted zone",
          expected=sorted(TRUSTED_INTERFACES), found=trusted.stdout.split(), detail=output(trusted))
