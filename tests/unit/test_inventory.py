"""The generated inventory: golden files for three labs, accepted by ansible-inventory."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from labctl.machines.reach import control_path_dir
from labctl.model.config import parse_lab
from labctl.provisioning.inventory import render_inventory
from labctl.state import StateDir
from tests.unit.conftest import base_lab, lab_existing, lab_one_plus_three, run_labctl, write_lab

GOLDEN = Path(__file__).parent / "golden"


def lab_default() -> dict:
    return base_lab()


LABS = {"default": lab_default, "one-plus-three": lab_one_plus_three, "existing": lab_existing}


def rendered(name: str, tmp_path: Path) -> dict[str, str]:
    lab_file = write_lab(tmp_path, LABS[name]())
    lab = parse_lab(LABS[name](), str(lab_file))
    files = render_inventory(lab, lab_file)
    # a long tmp_path moves the ControlPath dir to /tmp/labctl-<uid>/<hash> (unix socket limit)
    state = StateDir(lab_file, lab.name)
    files = {k: v.replace(str(control_path_dir(state)), str(state.control_dir)) for k, v in files.items()}
    # the state dir is absolute: make the golden files independent of where the test runs
    return {k: v.replace(str(tmp_path), "<LAB_DIR>") for k, v in files.items()}


@pytest.mark.parametrize("name", sorted(LABS))
def test_inventory_matches_golden(name: str, tmp_path: Path):
    files = rendered(name, tmp_path)
    for rel, content in files.items():
        golden = GOLDEN / name / rel
        if os.environ.get("UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(content)
        assert golden.exists(), f"missing golden file {golden} (run with UPDATE_GOLDEN=1 and review it)"
        assert content == golden.read_text(), f"{name}/{rel} differs from the golden file"


@pytest.mark.parametrize("name", sorted(LABS))
def test_ansible_inventory_accepts_it(name: str, tmp_path: Path):
    data = LABS[name]()
    for n in data["nodes"]:
        if "ssh_key" in n:  # the CLI checks that a key file is there (the golden labs name /keys/lab_ed25519)
            key = tmp_path / "lab_ed25519"
            key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n")
            n["ssh_key"] = str(key)
    lab_file = write_lab(tmp_path, data)
    r = run_labctl("inventory", "--lab", str(lab_file), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    hosts = Path(r.stdout.strip())
    assert hosts == tmp_path / "inventory" / LABS[name]()["name"] / "hosts.yml"
    out = subprocess.run(["ansible-inventory", "-i", str(hosts), "--list"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    inv = json.loads(out.stdout)
    lab = LABS[name]()
    names = {n["name"] for n in lab["nodes"]}
    assert set(inv["_meta"]["hostvars"]) == names
    cps = {n["name"] for n in lab["nodes"] if n["role"] == "control-plane"}
    workers = {n["name"] for n in lab["nodes"] if n["role"] == "worker"}
    assert set(inv["control_plane"]["hosts"]) == cps
    assert set(inv["workers"]["hosts"]) == workers
    assert set(inv["registry"]["hosts"]) == {"registry"}
    assert set(inv["k8s_cluster"]["children"]) == {"control_plane", "workers"}
    for n in lab["nodes"]:
        hv = inv["_meta"]["hostvars"][n["name"]]
        assert hv["lab_ip"] == n["ip"]
        assert hv["lab_pod_subnet"] == lab["kubernetes"]["pod_subnet"]
        expected_host = n.get("ssh_host", n["ip"])
        assert hv["ansible_host"] == expected_host
        assert "StrictHostKeyChecking=yes" in hv["ansible_ssh_common_args"]


def test_inventory_is_rewritten_only_when_lab_changes(tmp_path: Path):
    lab_file = write_lab(tmp_path, lab_default())
    assert run_labctl("inventory", "--lab", str(lab_file), cwd=tmp_path).returncode == 0
    hosts = tmp_path / "inventory" / "k8s-lab" / "hosts.yml"
    first = hosts.stat().st_mtime_ns
    assert run_labctl("inventory", "--lab", str(lab_file), cwd=tmp_path).returncode == 0
    assert hosts.stat().st_mtime_ns == first, "an unchanged lab must not rewrite the inventory"
    d = lab_default()
    d["nodes"][1]["ip"] = "192.168.56.32"
    write_lab(tmp_path, d)
    assert run_labctl("inventory", "--lab", str(lab_file), cwd=tmp_path).returncode == 0
    assert "192.168.56.32" in hosts.read_text()


def test_bad_lab_writes_no_inventory(tmp_path: Path):
    d = lab_default()
    d["nodes"][1]["ip"] = "10.0.0.1"
    lab_file = write_lab(tmp_path, d)
    r = run_labctl("inventory", "--lab", str(lab_file), cwd=tmp_path)
    assert r.returncode == 2 and "nodes[1].ip" in r.stderr
    assert not (tmp_path / "inventory").exists() and not (tmp_path / ".labctl").exists()
