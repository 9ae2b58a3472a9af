"""Every mistake a user can make in lab.yml gets exit 2, the field path, no traceback, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import REPO, base_lab, run_labctl, write_lab


def _set(path: str, value):
    """A mutation that sets a dotted/indexed path in the base lab ('nodes[1].ip')."""
    def mutate(d: dict) -> dict:
        cur = d
        parts = path.replace("[", ".").replace("]", "").split(".")
        for p in parts[:-1]:
            cur = cur[int(p)] if p.isdigit() else cur[p]
        last = parts[-1]
        if value is _DELETE:
            del cur[int(last) if last.isdigit() else last]
        elif last.isdigit():
            cur[int(last)] = value
        else:
            cur[last] = value
        return d
    return mutate


_DELETE = object()


def _nodes(*nodes: dict) -> Callable[[dict], dict]:
    def mutate(d: dict) -> dict:
        d["nodes"] = list(nodes)
        return d
    return mutate


def _chain(*fs):
    def mutate(d):
        for f in fs:
            d = f(d)
        return d
    return mutate


def _existing(d: dict) -> dict:
    """provider existing, every node reachable (no ssh_key: ssh's defaults)."""
    d["provider"] = "existing"
    for n in d["nodes"]:
        n.update(ssh_host=n["ip"], ssh_user="admin")
    return d


# A small lab written by hand, for the cases that are about its text (line numbers).
RAW = """\
name: k8s-lab
provider: docker
network: {cidr: 192.168.56.0/24}
nodes:
  - name: master
    role: control-plane
    ip: 192.168.56.21
  - {name: registry, role: registry, ip: 192.168.56.100}
kubernetes: {proxy_mode: nftables}
"""
_RAW_LINES = RAW.splitlines(keepends=True)

CP = {"name": "master", "role": "control-plane", "ip": "192.168.56.21", "cpus": 2, "memory_mb": 2048}
WK = {"name": "node", "role": "worker", "ip": "192.168.56.31"}
RG = {"name": "registry", "role": "registry", "ip": "192.168.56.100"}

# (id, mutation or raw YAML, the field path the message must name, a fragment the message must hold)
CASES: list[tuple[str, object, str, str]] = [
    ("yaml-syntax", "name: lab\nnodes: [\n  {name: a\n", "", "line "),
    ("yaml-tab-indent", "name: lab\n\tprovider: docker\n", "", "YAML syntax error"),
    ("not-a-mapping", "- just\n- a list\n", "", "expected a mapping"),
    ("empty-file", "", "", "an empty file"),
    ("unknown-top-key", _set("nodez", []), "nodez", "unknown key 'nodez'; did you mean 'nodes'"),
    ("unknown-node-key", _set("nodes[0].memory", 2048), "nodes[0].memory", "did you mean 'memory_mb'"),
    ("unknown-k8s-key", _set("kubernetes.podsubnet", "10.244.0.0/16"), "kubernetes.podsubnet", "did you mean 'pod_subnet'"),
    ("missing-name", _set("name", _DELETE), "name", "required key is missing"),
    ("missing-provider", _set("provider", _DELETE), "provider", "required key is missing"),
    ("missing-network", _set("network", _DELETE), "network", "required key is missing"),
    ("missing-node-ip", _set("nodes[1].ip", _DELETE), "nodes[1].ip", "required key is missing"),
    ("missing-node-role", _set("nodes[2].role", _DELETE), "nodes[2].role", "required key is missing"),
    ("cpus-not-int", _set("nodes[0].cpus", "two"), "nodes[0].cpus", "'two'"),
    ("memory-not-int", _set("nodes[1].memory_mb", 2048.5), "nodes[1].memory_mb", "2048.5"),
    ("nodes-not-list", _set("nodes", {"master": 1}), "nodes", "list"),
    ("no-nodes", _set("nodes", []), "nodes", "at least 1"),
    ("bad-provider", _set("provider", "virtualbox"), "provider", "'vagrant', 'docker' or 'existing'"),
    ("bad-role", _set("nodes[1].role", "minion"), "nodes[1].role", "'control-plane', 'worker' or 'registry'"),
    ("name-not-dns", _set("nodes[1].name", "Node_1"), "nodes[1].name", "DNS label"),
    ("name-repeated", _set("nodes[1].name", "master"), "nodes[1].name", "already used by nodes[0]"),
    ("lab-name-not-dns", _set("name", "My Lab"), "name", "DNS label"),
    ("ip-invalid", _set("nodes[1].ip", "192.168.56.300"), "nodes[1].ip", "192.168.56.300"),
    ("ip-repeated", _set("nodes[2].ip", "192.168.56.31"), "nodes[2].ip", "already used by nodes[1]"),
    ("ip-outside-cidr", _set("nodes[1].ip", "192.168.57.31"), "nodes[1].ip", "outside network.cidr"),
    ("ip-network-address", _set("nodes[1].ip", "192.168.56.0"), "nodes[1].ip", "network address"),
    ("ip-broadcast-address", _set("nodes[1].ip", "192.168.56.255"), "nodes[1].ip", "broadcast address"),
    ("ip-gateway", _set("nodes[1].ip", "192.168.56.1"), "nodes[1].ip", "gateway"),
    ("no-control-plane", _nodes(WK, RG), "nodes", "no node has role 'control-plane'"),
    ("no-registry-but-mirroring", _nodes(CP, WK), "kubernetes.mirror_images", "no node has role 'registry'"),
    ("two-registries", _nodes(CP, WK, RG, {**RG, "name": "registry2", "ip": "192.168.56.101"}), "nodes", "at most one"),
    ("cidr-invalid", _set("network.cidr", "192.168.56.0/33"), "network.cidr", "192.168.56.0/33"),
    ("cidr-host-bits", _set("network.cidr", "192.168.56.1/24"), "network.cidr", "host bits"),
    ("pod-overlaps-service", _set("kubernetes.service_subnet", "10.244.128.0/17"), "kubernetes.service_subnet",
     "overlaps kubernetes.pod_subnet"),
    ("pod-overlaps-nodes", _chain(_set("kubernetes.pod_subnet", "192.168.0.0/16")), "kubernetes.pod_subnet",
     "overlaps network.cidr"),
    ("pod-subnet-too-small", _set("kubernetes.pod_subnet", "10.244.0.0/24"), "kubernetes.pod_subnet", "/22 or larger"),
    ("version-too-old", _set("kubernetes.version", "1.30"), "kubernetes.version", "v1beta4"),
    ("version-unknown", _set("kubernetes.version", "1.39"), "kubernetes.version", "labctl knows"),
    ("version-unquoted", "PLACEHOLDER-UNQUOTED", "kubernetes.version", "quote the version"),
    ("version-garbage", _set("kubernetes.version", "latest"), "kubernetes.version", "MAJOR.MINOR"),
    ("ipvs-removed", _chain(_set("kubernetes.version", "1.40"), _set("kubernetes.proxy_mode", "ipvs")),
     "kubernetes.proxy_mode", "disabled upstream"),
    ("bad-proxy-mode", _set("kubernetes.proxy_mode", "userspace"), "kubernetes.proxy_mode", "'ipvs', 'nftables' or 'iptables'"),
    ("cp-one-cpu", _set("nodes[0].cpus", 1), "nodes[0].cpus", "at least 2 CPUs"),
    ("cp-low-memory", _set("nodes[0].memory_mb", 1024), "nodes[0].memory_mb", "at least 1700 MB"),
    ("provider-os-pair", _set("os", "rocky9"), "os", "provider 'docker' supports: debian12"),
    ("bad-os", _set("os", "centos7"), "os", "'debian12', 'ubuntu2404' or 'rocky9'"),
    ("bad-firewall", _set("host.firewall", "off"), "host.firewall", "'disabled' or 'ports'"),
    ("bad-ingress", _set("addons.ingress", "nginx"), "addons.ingress", "'traefik', 'ingress-nginx' or 'none'"),
    ("addon-unsupported-version", _chain(_set("addons.ingress", "ingress-nginx")), "addons.ingress",
     "known to work with Kubernetes"),
    ("dashboard-unsupported-version", _set("addons.dashboard", "kubernetes-dashboard"), "addons.dashboard",
     "known to work with Kubernetes"),
    ("nodeport-out-of-range", _set("addons.grafana_nodeport", 8080), "addons.grafana_nodeport", "greater than or equal to 30000"),
    ("nodeport-clash", _set("addons.grafana_nodeport", 30080), "addons.grafana_nodeport",
     "already used by addons.ingress_http_nodeport"),
    ("registry-port-range", _set("registry.port", 70000), "registry.port", "less than or equal to 65535"),
    ("ssh-fields-without-existing", _set("nodes[1].ssh_host", "10.0.0.5"), "nodes[1].ssh_host",
     "only used with provider 'existing'"),
    ("existing-without-ssh", _set("provider", "existing"), "nodes[0].ssh_host", "required for provider 'existing'"),
    ("metrics-not-bool", _set("addons.metrics_server", "yes"), "addons.metrics_server", "'yes'"),
    # issue #13 -- a port lab.yml sets on a port the same host already serves
    ("registry-port-sshd", _set("registry.port", 22), "registry.port",
     "found 22, already taken on registry node 'registry' (nodes[2]) by 22 (sshd)"),
    ("registry-port-nfs", _set("registry.port", 2049), "registry.port", "by 2049 (the NFS server)"),
    ("registry-port-rpcbind", _set("registry.port", 111), "registry.port", "by 111 (rpcbind, for NFS)"),
    ("registry-port-on-ssh-port", _chain(_existing, _set("nodes[2].ssh_port", 5000)), "registry.port",
     "found 5000, already taken on registry node 'registry' (nodes[2]) by 5000 (sshd)"),
    ("ssh-port-api-server", _chain(_existing, _set("nodes[0].ssh_port", 6443)), "nodes[0].ssh_port",
     "by 6443 (the Kubernetes API server)"),
    ("ssh-port-etcd", _chain(_existing, _set("nodes[0].ssh_port", 2380)), "nodes[0].ssh_port", "by 2379-2380 (etcd)"),
    ("ssh-port-kubelet", _chain(_existing, _set("nodes[1].ssh_port", 10250)), "nodes[1].ssh_port", "by 10250 (the kubelet API)"),
    ("ssh-port-nodeport-range", _chain(_existing, _set("nodes[1].ssh_port", 30022)), "nodes[1].ssh_port",
     "by 30000-32767 (the NodePort range)"),
    ("ssh-port-nfs", _chain(_existing, _set("nodes[2].ssh_port", 2049)), "nodes[2].ssh_port", "by 2049 (the NFS server)"),
    ("ssh-port-without-existing", _set("nodes[1].ssh_port", 2222), "nodes[1].ssh_port", "only used with provider 'existing'"),
    # issue #13 -- an empty string where a value is required
    ("empty-registry-user", _set("registry.user", ""), "registry.user",
     "must not be empty; write a value or remove the key (found '')"),
    ("blank-lab-name", _set("name", "  "), "name", "must not be empty"),
    ("empty-node-name", _set("nodes[1].name", ""), "nodes[1].name", "must not be empty"),
    ("empty-dns-domain", _set("kubernetes.dns_domain", ""), "kubernetes.dns_domain", "must not be empty"),
    ("empty-packages-dir", _set("kubernetes.packages_dir", ""), "kubernetes.packages_dir", "must not be empty"),
    ("empty-ssh-user", _chain(_existing, _set("nodes[0].ssh_user", "")), "nodes[0].ssh_user", "must not be empty"),
    ("empty-ssh-host", _chain(_existing, _set("nodes[1].ssh_host", "")), "nodes[1].ssh_host", "must not be empty"),
    ("registry-user-colon", _set("registry.user", "lab:ctl"), "registry.user", "expected a user name"),
    ("registry-user-space", _set("registry.user", "lab ctl"), "registry.user", "expected a user name"),
    ("ssh-user-invalid", _chain(_existing, _set("nodes[1].ssh_user", "-admin")), "nodes[1].ssh_user", "expected a user name"),
    # issue #13 -- a path on the controller that is not there, or not what it must be
    ("packages-dir-missing", _set("kubernetes.packages_dir", "/nonexistent"), "kubernetes.packages_dir",
     "found '/nonexistent'; no such directory on this machine"),
    ("packages-dir-relative", _set("kubernetes.packages_dir", "pkgs"), "kubernetes.packages_dir", "a relative path"),
    ("packages-dir-a-file", _set("kubernetes.packages_dir", str(REPO / "README.md")), "kubernetes.packages_dir",
     "not a directory"),
    ("packages-dir-without-packages", _set("kubernetes.packages_dir", str(REPO / "docs")), "kubernetes.packages_dir",
     "lacks kubeadm"),
    ("ssh-key-missing", _chain(_existing, _set("nodes[1].ssh_key", "/nonexistent/id_ed25519")), "nodes[1].ssh_key",
     "no such file on this machine"),
    ("ssh-key-a-directory", _chain(_existing, _set("nodes[1].ssh_key", str(REPO))), "nodes[1].ssh_key", "not a file"),
    ("ssh-key-not-a-key", _chain(_existing, _set("nodes[1].ssh_key", str(REPO / "README.md"))), "nodes[1].ssh_key",
     "holds no private key"),
    # issue #13 -- a key written twice
    ("duplicate-top-key", RAW + "name: other\n", "name", "line 10: key 'name' written twice (first at line 1)"),
    ("duplicate-node-key", "".join(_RAW_LINES[:7] + ["    name: master2\n"] + _RAW_LINES[7:]), "nodes[0].name",
     "line 8: key 'name' written twice (first at line 5)"),
    ("duplicate-flow-key", RAW.replace("ip: 192.168.56.100}", "ip: 192.168.56.100, role: worker}"), "nodes[1].role",
     "line 8: key 'role' written twice (first at line 8)"),
]


def _materialize(spec: object) -> str | dict:
    if spec == "PLACEHOLDER-UNQUOTED":
        import yaml

        text = yaml.safe_dump(base_lab(), sort_keys=False)
        return text.replace("version: '1.37'", "version: 1.37")
    if isinstance(spec, str):
        return spec
    return spec(base_lab())  # type: ignore[operator]


def test_table_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize(("case", "spec", "path", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_malformed_lab_is_refused(tmp_path: Path, case: str, spec: object, path: str, fragment: str):
    lab = write_lab(tmp_path, _materialize(spec))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = run_labctl("check", "--lab", str(lab), cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out
    if path:
        assert f"{path}:" in out, f"field path {path!r} not named in:\n{out}"
    assert fragment in out, f"{fragment!r} not in:\n{out}"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "check must not write anything"


def test_valid_default_lab_passes(tmp_path: Path):
    r = run_labctl("init", "--lab", str(tmp_path / "lab.yml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_labctl("check", "--lab", str(tmp_path / "lab.yml"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok -- lab 'k8s-lab'" in r.stdout


@pytest.mark.parametrize(("mutation", "fragment"), [
    (_set("kubernetes.proxy_mode", "ipvs"), "ipvs is deprecated upstream"),
    (_nodes(CP, {**CP, "name": "master2", "ip": "192.168.56.22"}, WK, RG), "odd number"),
    (_nodes(CP, RG), "no worker node"),
], ids=["ipvs-deprecated", "even-control-planes", "no-workers"])
def test_warnings_print_and_exit_zero(tmp_path: Path, mutation, fragment):
    lab = write_lab(tmp_path, mutation(base_lab()))
    r = run_labctl("check", "--lab", str(lab), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning:" in r.stdout and fragment in r.stdout


def test_missing_lab_file_is_a_clear_error(tmp_path: Path):
    r = run_labctl("check", "--lab", str(tmp_path / "nope.yml"), cwd=tmp_path)
    assert r.returncode == 2
    assert "no such file" in r.stderr and "labctl init" in r.stderr


def test_all_errors_are_reported_at_once(tmp_path: Path):
    d = base_lab()
    d["nodes"][1]["ip"] = "10.9.9.9"
    d["nodes"][2]["name"] = "master"
    lab = write_lab(tmp_path, d)
    r = run_labctl("check", "--lab", str(lab), cwd=tmp_path)
    assert r.returncode == 2
    assert "nodes[1].ip" in r.stderr and "nodes[2].name" in r.stderr


def test_controller_paths_that_hold_what_they_must_pass(tmp_path: Path):
    """A packages_dir with kubeadm/kubelet/kubectl at the lab's version and Helm's tarball, and a private key."""
    from labctl.model import versions

    d = _existing(base_lab())
    patch = versions.KUBERNETES[d["kubernetes"]["version"]].patch
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    for name in ("kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni"):
        (pkgs / f"{name}_{patch}-1.1_amd64.deb").write_bytes(b"")
    (pkgs / f"helm-v{versions.ADDONS['helm'].version}-linux-amd64.tar.gz").write_bytes(b"")
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    d["kubernetes"]["packages_dir"] = str(pkgs)
    d["nodes"][1]["ssh_key"] = str(key)
    d["nodes"][1]["ssh_port"] = 2222
    r = run_labctl("check", "--lab", str(write_lab(tmp_path, d)), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # without Helm's tarball, a lab with Helm-installed addons is refused; with none, it is not needed
    next(pkgs.glob("helm-*")).unlink()
    r = run_labctl("check", "--lab", str(write_lab(tmp_path, d)), cwd=tmp_path)
    assert r.returncode == 2 and "kubernetes.packages_dir:" in r.stderr and "helm-v" in r.stderr, r.stderr
    d["addons"].update(ingress="none", dashboard="none", monitoring="none", metrics_server=False)
    r = run_labctl("check", "--lab", str(write_lab(tmp_path, d)), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_anchors_and_merge_keys_are_not_duplicates(tmp_path: Path):
    """`<<: *anchor` then a key of the anchor's overrides it (YAML's merge); yamllint allows it too."""
    text = RAW.replace("  - name: master\n", "  - &cp\n    name: master\n").replace(
        "  - {name: registry,", "  - <<: *cp\n    name: master2\n    ip: 192.168.56.22\n  - {name: registry,")
    r = run_labctl("check", "--lab", str(write_lab(tmp_path, text)), cwd=tmp_path)
    assert r.returncode == 0, text + r.stdout + r.stderr
