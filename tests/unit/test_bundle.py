"""labctl bundle: pins -> digest, the manifest, the cache (no Go build here)."""

from __future__ import annotations

import copy
import json
import re
import tarfile
from pathlib import Path

import pytest

from labctl.bundle import build as bundle
from labctl.errors import UserError
from labctl.model import versions
from labctl.model.config import parse_lab
from labctl.model.images import kubeadm_images, lab_images
from labctl.verify.workloads import WORKLOAD_IMAGES

from .conftest import base_lab
from .test_pins import _modcache


def _pins() -> dict:
    return copy.deepcopy(versions.PINS)


def test_bundle_pins_follow_the_kubernetes_table():
    p = bundle.bundle_pins(_pins(), "1.37")
    rel = versions.KUBERNETES["1.37"]
    assert p["kubernetes"] == {"minor": "1.37", "module": "k8s.io/kubernetes", "version": f"v{rel.patch}",
                               "pause": rel.pause, "coredns": rel.coredns, "etcd": rel.etcd}
    assert p["etcd"]["version"] == "v" + rel.etcd.rsplit("-", 1)[0] and p["etcd"]["tag"] == rel.etcd
    assert p["coredns"]["version"] == rel.coredns
    assert p["containerd"]["version"].startswith("v2.")


def test_unknown_minor_is_refused():
    with pytest.raises(UserError, match="not a pinned Kubernetes minor"):
        bundle.bundle_pins(_pins(), "1.99")


def test_digest_is_stable_and_follows_every_pin():
    base = bundle.bundle_pins(_pins(), "1.37")
    assert bundle.digest(base) == bundle.digest(copy.deepcopy(base))
    assert len(bundle.digest(base)) == 64
    seen = {bundle.digest(base)}
    for change in (("containerd", "version", "v2.3.6"), ("kubernetes", "version", "v1.37.1"),
                   ("kubernetes", "pause", "3.10.1"), ("helm", "version", "v3.19.4")):
        p = copy.deepcopy(base)
        p[change[0]][change[1]] = change[2]
        seen.add(bundle.digest(p))
    assert len(seen) == 5
    assert bundle.digest(bundle.bundle_pins(_pins(), "1.36")) not in seen


def test_digest_changes_with_the_recipe(monkeypatch):
    p = bundle.bundle_pins(_pins(), "1.37")
    before = bundle.digest(p)
    monkeypatch.setattr(bundle, "RECIPE", bundle.RECIPE + 1)
    assert bundle.digest(p) != before


def test_image_refs_are_what_the_lab_lists():
    refs = bundle.image_refs(bundle.bundle_pins(_pins(), versions.DEFAULT_KUBERNETES))
    lab = parse_lab(base_lab())
    assert set(kubeadm_images(lab)) <= set(refs.values())
    listed = {i.source for i in lab_images(lab) if i.group in ("kubeadm", "cni", "workloads")}
    assert listed <= set(refs.values())
    assert refs["metrics-server"] == "registry.k8s.io/metrics-server/metrics-server:v0.8.0"
    # every image the workload checks run comes from the bundle, agnhost under its upstream name
    assert {refs["agnhost"], refs["busybox"]} == set(WORKLOAD_IMAGES.values())
    assert refs["agnhost"] == f"registry.k8s.io/e2e-test-images/agnhost:{versions.PINS['bundle']['agnhost']['tag']}"


def test_agnhost_pin_is_the_modules_version_file():
    a = versions.PINS["bundle"]["agnhost"]
    assert a["module"] == "k8s.io/kubernetes" and isinstance(a["tag"], str)
    assert bundle.staging_version("v1.37.2") == "v0.37.2"  # its staging modules, as for kubeadm & co.
    cache = _modcache()
    src = cache / f"{a['module']}@{a['version']}" if cache else None
    if src is None or not (src / "test/images/agnhost/VERSION").exists():
        pytest.skip(f"{a['module']}@{a['version']} is not in the Go module cache (go mod download {a['module']}@"
                    f"{a['version']}); the build compares the pin with its VERSION file")
    assert (src / "test/images/agnhost/VERSION").read_text().strip() == a["tag"]
    # the tag Kubernetes' own e2e tests pull (test/utils/image/manifest.go), so the ref is upstream's
    manifest = (src / "test/utils/image/manifest.go").read_text()
    assert re.search(r'configs\[Agnhost\] = Config\{[^,]+, "agnhost", "([^"]+)"\}', manifest).group(1) == a["tag"]


def _fake_bundle(root: Path, bpins: dict) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "kubeadm").write_bytes(b"kubeadm")
    arts = [{"path": "bin/kubeadm", "kind": "binary", "name": "kubeadm", "version": "v1",
             "source": "k8s.io/kubernetes@v1", "sha256": bundle.sha256_file(root / "bin" / "kubeadm")}]
    (root / "manifest.json").write_text(json.dumps(bundle.make_manifest(bpins, arts, [])))
    return root


def test_manifest_shape_and_check(tmp_path: Path):
    bpins = bundle.bundle_pins(_pins(), "1.37")
    b = _fake_bundle(tmp_path / "b", bpins)
    m = bundle.read_manifest(b)
    assert m["format"] == 1 and m["name"] == "labctl-bundle" and m["digest"] == bundle.digest(bpins)
    assert m["kubernetes"] == bpins["kubernetes"]["version"] and m["pins"] == bpins
    assert bundle.check_bundle(b) == []
    (b / "bin" / "kubeadm").write_bytes(b"changed")
    assert bundle.check_bundle(b) == ["bin/kubeadm: sha256 differs from the manifest"]
    (b / "bin" / "kubeadm").unlink()
    assert bundle.check_bundle(b) == ["bin/kubeadm: missing"]
    assert bundle.up_to_date(b, bundle.digest(bpins))
    assert not bundle.up_to_date(b, "0" * 64)
    assert not bundle.up_to_date(tmp_path / "none", bundle.digest(bpins))


def test_what_build_writes_the_lab_side_reads(tmp_path: Path):
    """One reader of manifest.json: the build's check and the lab's kubernetes.bundle see the same document."""
    from labctl.bundle import manifest as bundle_manifest

    bpins = bundle.bundle_pins(_pins(), "1.37")
    b = _fake_bundle(tmp_path / "b", bpins)
    assert bundle.read_manifest(b) == bundle_manifest.load(b)
    read = bundle_manifest.read(str(b))
    assert read.kubernetes == bpins["kubernetes"]["version"] and read.binaries == {"kubeadm": str(b / "bin" / "kubeadm")}


def test_a_built_bundle_is_not_built_again(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bpins = bundle.bundle_pins(_pins(), "1.37")
    root = tmp_path / "labctl" / "bundles"
    _fake_bundle(root / bundle.digest(bpins), bpins)
    monkeypatch.setattr(bundle, "Builder", None)  # any build attempt would fail
    lines: list[str] = []
    got = bundle.build("1.37", say=lines.append)
    assert got == root / bundle.digest(bpins)
    assert lines == [f"bundle up to date: {got}"]
    link = root / "current-1.37"
    assert link.is_symlink() and link.resolve() == got.resolve()
    assert bundle.build("1.37", say=lines.append) == got  # the link is replaced, not an error


def test_out_dir_with_another_digest_is_rebuilt(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old = bundle.bundle_pins(_pins(), "1.36")
    out = _fake_bundle(tmp_path / "out", old)
    built = []

    class FakeBuilder:
        def __init__(self, bpins, stage, work, say):
            self.bpins, self.stage = bpins, stage

        def build(self):
            self.stage.mkdir(parents=True, exist_ok=True)
            (self.stage / "manifest.json").write_text(json.dumps(bundle.make_manifest(self.bpins, [], [])))
            built.append(self.bpins["kubernetes"]["minor"])

    monkeypatch.setattr(bundle, "Builder", FakeBuilder)
    monkeypatch.setattr(bundle.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    bundle.build("1.37", out=out, say=lambda _l: None)
    assert built == ["1.37"]
    assert bundle.read_manifest(out)["digest"] == bundle.digest(bundle.bundle_pins(_pins(), "1.37"))
    assert not (tmp_path / "cache" / "labctl" / "bundles" / "current-1.37").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_layers_are_deterministic(tmp_path: Path):
    src = tmp_path / "tool"
    src.write_bytes(b"\x7fELF...")
    entries = [bundle.Entry("usr/local/bin/tool", src), bundle.Entry("bin/sh", link="/bin/busybox"),
               bundle.Entry("tmp", is_dir=True)]
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    bundle.write_layer(a, entries)
    src.touch()  # a new mtime changes nothing
    bundle.write_layer(b, list(reversed(entries)))
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["bin", "bin/sh", "tmp", "usr", "usr/local", "usr/local/bin", "usr/local/bin/tool"]
    tool = members["usr/local/bin/tool"]
    assert tool.mode == 0o755 and tool.uid == 0 and tool.mtime == 0
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"


def test_a_second_build_of_the_same_digest_waits_for_the_first(tmp_path: Path, monkeypatch):
    """Two builds of one digest shared a work directory and broke each other; the second now waits."""
    import fcntl
    import threading

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bpins = bundle.bundle_pins(_pins(), "1.37")
    want = bundle.digest(bpins)
    root = tmp_path / "labctl" / "bundles"
    monkeypatch.setattr(bundle, "Builder", None)  # any build attempt would fail
    lock_path = tmp_path / "labctl" / "work" / f"{want[:16]}.lock"
    lock_path.parent.mkdir(parents=True)
    lines: list[str] = []
    result: list[Path] = []
    with lock_path.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # "the first build"
        second = threading.Thread(target=lambda: result.append(bundle.build("1.37", say=lines.append)))
        second.start()
        second.join(timeout=2)
        assert second.is_alive() and lines == [f"another `labctl bundle build` is building {want[:12]}: waiting for it"]
        _fake_bundle(root / want, bpins)  # what the first build leaves
        fcntl.flock(held, fcntl.LOCK_UN)
    second.join(timeout=10)
    assert result == [root / want] and lines[-1] == f"bundle up to date: {root / want}"
