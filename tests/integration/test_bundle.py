"""`labctl bundle build` for real: every artifact there with its sha256, the binaries print their
pinned versions, the images are linux/amd64 OCI archives with the expected entrypoint.

Builds into the shared cache (~/.cache/labctl/bundles): the first run on a machine builds from the
Go module proxy (many minutes on 2 cores, docs/bundle.md), later runs are a no-op.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.bundle import build as bundle
from labctl.model import versions

pytestmark = pytest.mark.integration

MINOR = versions.DEFAULT_KUBERNETES
ENTRYPOINTS = {
    "pause": ["/pause"],
    "etcd": ["/usr/local/bin/etcd"],
    "kube-apiserver": ["/usr/local/bin/kube-apiserver"],
    "kube-controller-manager": ["/usr/local/bin/kube-controller-manager"],
    "kube-scheduler": ["/usr/local/bin/kube-scheduler"],
    "kube-proxy": ["/usr/local/bin/kube-proxy"],
    "coredns": ["/coredns"],
    "flannel": ["/opt/bin/flanneld"],
    "flannel-cni-plugin": None,  # Cmd /bin/sh, the DaemonSet's init container runs cp
    "metrics-server": ["/metrics-server"],
    "busybox": None,
    "csr-approver": None,  # Cmd python3; roles/csr_approver sets the command
    "agnhost": ["/agnhost"],  # Cmd pause, as upstream's Dockerfile
}


@pytest.fixture(scope="module")
def built() -> Path:
    r = subprocess.run([sys.executable, "-m", "labctl", "bundle", "build", "--minor", MINOR],
                       capture_output=True, text=True, timeout=3 * 3600)
    assert r.returncode == 0, f"labctl bundle build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    path = Path(r.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    assert (bundle.bundles_dir() / f"current-{MINOR}").resolve() == path.resolve()
    return path


@pytest.fixture(scope="module")
def manifest(built: Path) -> dict:
    return json.loads((built / "manifest.json").read_text())


def _run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"
    return r.stdout + r.stderr


def test_manifest_matches_the_pins(built: Path, manifest: dict):
    bpins = bundle.bundle_pins(versions.PINS, MINOR)
    assert manifest["format"] == 1 and manifest["name"] == "labctl-bundle"
    assert manifest["digest"] == bundle.digest(bpins) == built.name
    assert manifest["kubernetes"] == f"v{versions.KUBERNETES[MINOR].patch}"
    paths = {a["path"] for a in manifest["artifacts"]}
    for name in ("kubeadm", "kubelet", "kubectl", "crictl", "containerd", "containerd-shim-runc-v2", "ctr", "runc",
                 "helm"):
        assert f"bin/{name}" in paths
    for name in ("bridge", "host-local", "loopback", "portmap", "flannel"):
        assert f"cni/{name}" in paths
    for name in ENTRYPOINTS:
        assert f"images/{name}.tar" in paths


def test_every_artifact_has_its_sha256(built: Path):
    assert bundle.check_bundle(built) == []


def test_image_refs_are_the_upstream_refs(manifest: dict):
    refs = bundle.image_refs(bundle.bundle_pins(versions.PINS, MINOR))
    for a in manifest["artifacts"]:
        if a["kind"] == "image":
            assert a["ref"] == refs[a["name"]]


def test_binaries_print_their_pinned_versions(built: Path):
    k8s = f"v{versions.KUBERNETES[MINOR].patch}"
    b = versions.PINS["bundle"]
    assert _run(str(built / "bin/kubeadm"), "version", "-o", "short").strip() == k8s
    assert _run(str(built / "bin/kubelet"), "--version").strip() == f"Kubernetes {k8s}"
    assert f"Client Version: {k8s}" in _run(str(built / "bin/kubectl"), "version", "--client")
    assert _run(str(built / "bin/crictl"), "--version").strip() == f"crictl version {b['cri_tools']['version']}"
    assert b["containerd"]["version"] in _run(str(built / "bin/containerd"), "--version")
    assert b["containerd"]["version"] in _run(str(built / "bin/ctr"), "--version")
    assert b["runc"]["version"].lstrip("v") in _run(str(built / "bin/runc"), "--version")
    assert b["helm"]["version"] in _run(str(built / "bin/helm"), "version", "--short")


def test_binaries_are_static(built: Path):
    for rel in ("bin/kubeadm", "bin/kubelet", "bin/containerd", "bin/runc", "cni/bridge", "cni/flannel"):
        out = subprocess.run(["ldd", str(built / rel)], capture_output=True, text=True)
        assert "not a dynamic executable" in (out.stdout + out.stderr) or "statically linked" in out.stdout, rel


@pytest.mark.parametrize("name", sorted(ENTRYPOINTS))
def test_images_are_linux_amd64_with_their_entrypoint(built: Path, manifest: dict, name: str):
    archive = built / "images" / f"{name}.tar"
    info = json.loads(_run("skopeo", "inspect", f"oci-archive:{archive}"))
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    config = json.loads(_run("skopeo", "inspect", "--config", f"oci-archive:{archive}"))["config"]
    assert config.get("Entrypoint") == ENTRYPOINTS[name]
    assert any(e.startswith("PATH=") for e in config.get("Env", []))
    ref = next(a["ref"] for a in manifest["artifacts"] if a["path"] == f"images/{name}.tar")
    index = json.loads(_run("tar", "-xOf", str(archive), "index.json"))
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == ref


def test_a_second_build_is_a_no_op(built: Path):
    r = subprocess.run([sys.executable, "-m", "labctl", "bundle", "build", "--minor", MINOR],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"bundle up to date: {built}"
