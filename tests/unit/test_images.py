"""labctl.model.images: the image list of a lab, the mirror naming rule, and `labctl images`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labctl.model import versions
from labctl.model.config import parse_lab
from labctl.model.images import kubeadm_images, lab_images, mirror_name, split_ref
from labctl.provisioning.inventory import render_inventory

from .conftest import base_lab, run_labctl


def _lab(**kubernetes):
    data = base_lab()
    data["kubernetes"].update(kubernetes)
    return parse_lab(data)


def test_kubeadm_images_follow_the_pins():
    lab = _lab(version="1.35")
    rel = versions.KUBERNETES["1.35"]
    assert kubeadm_images(lab) == [
        f"registry.k8s.io/kube-apiserver:v{rel.patch}",
        f"registry.k8s.io/kube-controller-manager:v{rel.patch}",
        f"registry.k8s.io/kube-scheduler:v{rel.patch}",
        f"registry.k8s.io/kube-proxy:v{rel.patch}",
        f"registry.k8s.io/coredns/coredns:{rel.coredns}",
        f"registry.k8s.io/pause:{rel.pause}",
        f"registry.k8s.io/etcd:{rel.etcd}",
    ]


def test_an_exact_patch_version_is_used_for_the_components():
    assert kubeadm_images(_lab(version="1.36.0"))[0] == "registry.k8s.io/kube-apiserver:v1.36.0"


def test_mirror_names_as_kubeadm_and_the_manifests_ask_for_them():
    by_source = {i.source: i.mirror for i in lab_images(_lab())}
    rel = versions.KUBERNETES["1.37"]
    # kubeadm asks for <imageRepository>/<name>:<tag>, CoreDNS included
    assert by_source[f"registry.k8s.io/coredns/coredns:{rel.coredns}"] == f"registry:5000/coredns:{rel.coredns}"
    assert by_source[f"registry.k8s.io/pause:{rel.pause}"] == f"registry:5000/pause:{rel.pause}"
    flannel = versions.ADDONS["flannel"].version
    assert by_source[f"ghcr.io/flannel-io/flannel:{flannel}"] == f"registry:5000/flannel-io/flannel:{flannel}"
    assert all(m.startswith("registry:5000/") for m in by_source.values())


def test_flannel_and_the_cni_plugin_are_listed():
    sources = [i.source for i in lab_images(_lab())]
    for ref in versions.ADDONS["flannel"].images:
        assert ref in sources


def test_no_mirror_names_when_the_lab_does_not_mirror():
    images = lab_images(_lab(mirror_images=False))
    assert images and all(i.mirror == "" for i in images)


def test_no_duplicates():
    sources = [i.source for i in lab_images(_lab())]
    assert len(sources) == len(set(sources))


@pytest.mark.parametrize("ref,parts", [
    ("registry.k8s.io/pause:3.10.1", ("registry.k8s.io", "pause", "3.10.1")),
    ("ghcr.io/flannel-io/flannel:v0.27.4", ("ghcr.io", "flannel-io/flannel", "v0.27.4")),
    ("registry:5000/coredns:v1.13.1", ("registry:5000", "coredns", "v1.13.1")),
    ("traefik/whoami:v1.11.0", ("docker.io", "traefik/whoami", "v1.11.0")),
    ("busybox", ("docker.io", "library/busybox", "latest")),
])
def test_split_ref(ref, parts):
    assert split_ref(ref) == parts


def test_mirror_name_rule():
    assert mirror_name("registry.k8s.io/coredns/coredns:v1.13.1", "reg:5000", "kubeadm") == "reg:5000/coredns:v1.13.1"
    assert mirror_name("quay.io/a/b:1", "reg:5000", "addons") == "reg:5000/a/b:1"


def test_group_vars_carry_the_same_list(tmp_path: Path):
    lab = _lab()
    gv = yaml.safe_load(render_inventory(lab, tmp_path / "lab.yml")["group_vars/all.yml"])
    assert gv["lab_images"] == [{"source": i.source, "mirror": i.mirror, "group": i.group} for i in lab_images(lab)]


def _write(tmp_path: Path, **kubernetes) -> Path:
    data = base_lab()
    data["kubernetes"].update(kubernetes)
    (tmp_path / "lab.yml").write_text(yaml.safe_dump(data))
    return tmp_path


def test_cli_lists_source_and_mirror(tmp_path: Path):
    r = run_labctl("images", cwd=_write(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(lab_images(_lab()))
    pause = versions.KUBERNETES[versions.DEFAULT_KUBERNETES].pause
    assert any(line.split() == [f"registry.k8s.io/pause:{pause}", "->", f"registry:5000/pause:{pause}"] for line in lines)


def test_cli_push_refused_without_mirroring(tmp_path: Path):
    r = run_labctl("images", "--push", cwd=_write(tmp_path, mirror_images=False))
    assert r.returncode == 2
    assert "does not mirror images" in r.stderr
