"""Every mistake a user can make in lab.yml gets exit 2, the field path, no traceback, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import base_lab, run_labctl, write_lab


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
