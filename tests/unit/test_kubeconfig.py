"""`labctl kubeconfig [--merge]`: the path, and a real merge into a kubeconfig file with a backup."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from labctl.commands.kubeconfig import merge_kubeconfig

from .conftest import base_lab, run_labctl

ADMIN_CONF = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "k8s-lab", "cluster": {"server": "https://192.168.56.21:6443",
                                                  "certificate-authority-data": "Q0E="}}],
    "users": [{"name": "kubernetes-admin", "user": {"client-certificate-data": "Q0VSVA==",
                                                     "client-key-data": "S0VZ"}}],
    "contexts": [{"name": "kubernetes-admin@k8s-lab", "context": {"cluster": "k8s-lab", "user": "kubernetes-admin"}}],
    "current-context": "kubernetes-admin@k8s-lab",
    "preferences": {},
}
OTHER = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "prod", "cluster": {"server": "https://prod:6443"}}],
    "users": [{"name": "me", "user": {"token": "t"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me", "namespace": "apps"}}],
    "current-context": "prod",
    "preferences": {"colors": True},
}


def test_merge_into_nothing_gives_one_context_named_after_the_lab():
    out = merge_kubeconfig(None, ADMIN_CONF, "k8s-lab")
    assert out["current-context"] == "k8s-lab"
    assert out["contexts"] == [{"name": "k8s-lab", "context": {"cluster": "k8s-lab", "user": "k8s-lab-admin"}}]
    assert out["clusters"][0]["cluster"]["server"] == "https://192.168.56.21:6443"
    assert out["users"][0] == {"name": "k8s-lab-admin", "user": ADMIN_CONF["users"][0]["user"]}


def test_merge_keeps_other_clusters_and_preferences():
    out = merge_kubeconfig(OTHER, ADMIN_CONF, "k8s-lab")
    assert [c["name"] for c in out["contexts"]] == ["prod", "k8s-lab"]
    assert [c["name"] for c in out["clusters"]] == ["prod", "k8s-lab"]
    assert [u["name"] for u in out["users"]] == ["me", "k8s-lab-admin"]
    assert out["contexts"][0]["context"]["namespace"] == "apps"
    assert out["preferences"] == {"colors": True}
    assert OTHER["current-context"] == "prod"  # the input is not modified


def test_merging_again_replaces_the_labs_entries():
    first = merge_kubeconfig(OTHER, ADMIN_CONF, "k8s-lab")
    rebuilt = {**ADMIN_CONF, "clusters": [{"name": "k8s-lab", "cluster": {"server": "https://192.168.56.22:6443"}}]}
    out = merge_kubeconfig(first, rebuilt, "k8s-lab")
    assert [c["name"] for c in out["clusters"]] == ["prod", "k8s-lab"]
    assert out["clusters"][1]["cluster"]["server"] == "https://192.168.56.22:6443"


def test_merge_refuses_an_empty_lab_kubeconfig():
    with pytest.raises(ValueError):
        merge_kubeconfig(OTHER, {"apiVersion": "v1", "kind": "Config"}, "k8s-lab")


def _lab_dir(tmp_path: Path, with_kubeconfig: bool = True) -> Path:
    (tmp_path / "lab.yml").write_text(yaml.safe_dump(base_lab()))
    if with_kubeconfig:
        state = tmp_path / ".labctl" / "k8s-lab"
        state.mkdir(parents=True)
        (state / "kubeconfig").write_text(yaml.safe_dump(ADMIN_CONF))
    return tmp_path


def test_cli_prints_the_path(tmp_path: Path):
    d = _lab_dir(tmp_path)
    r = run_labctl("kubeconfig", cwd=d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(d / ".labctl" / "k8s-lab" / "kubeconfig")


def test_cli_says_when_there_is_no_kubeconfig_yet(tmp_path: Path):
    r = run_labctl("kubeconfig", cwd=_lab_dir(tmp_path, with_kubeconfig=False))
    assert r.returncode == 2
    assert "labctl provision --until control-plane" in r.stderr


def test_cli_merge_writes_0600_and_keeps_a_backup(tmp_path: Path):
    d = _lab_dir(tmp_path)
    target = tmp_path / "home" / ".kube" / "config"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(OTHER))
    r = run_labctl("kubeconfig", "--merge", "--into", str(target), cwd=d)
    assert r.returncode == 0, r.stderr
    merged = yaml.safe_load(target.read_text())
    assert merged["current-context"] == "k8s-lab"
    assert {c["name"] for c in merged["contexts"]} == {"prod", "k8s-lab"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    backups = list(target.parent.glob("config.labctl-backup-*"))
    assert len(backups) == 1 and yaml.safe_load(backups[0].read_text()) == OTHER


def test_cli_merge_refuses_a_broken_target(tmp_path: Path):
    d = _lab_dir(tmp_path)
    target = tmp_path / "config"
    target.write_text("- just\n- a list\n")
    r = run_labctl("kubeconfig", "--merge", "--into", str(target), cwd=d)
    assert r.returncode == 2
    assert "is not a kubeconfig" in r.stderr
    assert target.read_text() == "- just\n- a list\n"
