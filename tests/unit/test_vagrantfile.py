"""The Vagrantfile reads lab.yml and `vagrant validate` accepts it for every provider.

Runs the real `vagrant` binary (skipped only where it is absent; CI installs it) on lab.yml
files written by `labctl init`. Vagrant refuses to validate for a provider whose tool it
cannot find: where VirtualBox is not installed, a stub `VBoxManage` that only answers
`--version` is put on PATH, so Vagrant's own validation of the virtualbox block still runs
(nothing is created; `test_validate_catches_a_bad_provider_option` shows the checks bite).
The box comes from labctl (LABCTL_BOX, labctl.providers.vagrant.box_env), as under `labctl up`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.conftest import REPO, run_labctl

VAGRANT = shutil.which("vagrant")
pytestmark = pytest.mark.skipif(VAGRANT is None, reason="the vagrant binary is not installed (CI installs it)")

CASES = [
    # (provider in lab.yml, os, workers, vagrant provider)
    ("docker", "debian12", 1, "docker"),
    ("docker", "debian12", 3, "docker"),
    ("vagrant", "debian12", 1, "virtualbox"),
    ("vagrant", "debian12", 1, "libvirt"),
    ("vagrant", "ubuntu2404", 2, "virtualbox"),
    ("vagrant", "ubuntu2404", 2, "libvirt"),
    ("vagrant", "rocky9", 1, "virtualbox"),
    ("vagrant", "rocky9", 1, "libvirt"),
]


def _lab(tmp_path: Path, provider: str, os_name: str, workers: int) -> Path:
    lab = tmp_path / "lab.yml"
    res = run_labctl("init", "--provider", provider, "--workers", str(workers), "--name", "vf-test",
                     "--cidr", "192.168.77.0/24", "--lab", str(lab), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    if os_name != "debian12":
        data = yaml.safe_load(lab.read_text())
        data["os"] = os_name
        lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def _env(tmp_path: Path, lab: Path, vm_provider: str) -> dict[str, str]:
    env = {
        **os.environ,
        "LABCTL_LAB": str(lab),
        "VAGRANT_VAGRANTFILE": str(REPO / "Vagrantfile"),
        "VAGRANT_DOTFILE_PATH": str(tmp_path / ".vagrant"),
        "VAGRANT_DEFAULT_PROVIDER": vm_provider,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    }
    if vm_provider in ("virtualbox", "libvirt"):
        from labctl.config import load_lab
        from labctl.providers.vagrant import box_env

        env.update(box_env(load_lab(lab), lab, vm_provider))
    if vm_provider == "virtualbox" and shutil.which("VBoxManage") is None:
        stub = tmp_path / "stub-bin"
        stub.mkdir(exist_ok=True)
        (stub / "VBoxManage").write_text("#!/bin/sh\necho 7.0.14r161095\n")
        (stub / "VBoxManage").chmod(0o755)
        env["PATH"] = f"{stub}:{env['PATH']}"
    return env


def _vagrant(args: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VAGRANT or "vagrant", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("provider", "os_name", "workers", "vm_provider"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}w-{c[3]}" for c in CASES])
def test_vagrant_validate(tmp_path: Path, provider: str, os_name: str, workers: int, vm_provider: str) -> None:
    lab = _lab(tmp_path, provider, os_name, workers)
    res = _vagrant(["validate"], tmp_path, _env(tmp_path, lab, vm_provider))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


def test_validate_catches_a_bad_provider_option(tmp_path: Path) -> None:
    """The validation above is real: an unknown docker provider option fails it."""
    lab = _lab(tmp_path, "docker", "debian12", 1)
    bad = tmp_path / "Vagrantfile"
    bad.write_text((REPO / "Vagrantfile").read_text().replace("d.has_ssh = false", "d.has_ssh = false; d.no_such_option = 1"))
    env = _env(tmp_path, lab, "docker") | {"VAGRANT_VAGRANTFILE": str(bad)}
    res = _vagrant(["validate"], tmp_path, env)
    assert res.returncode != 0
    assert "no_such_option" in res.stdout + res.stderr


def test_one_machine_per_node(tmp_path: Path) -> None:
    """Vagrant sees exactly the nodes of lab.yml, in order, nothing else."""
    lab = _lab(tmp_path, "vagrant", "debian12", 3)
    res = _vagrant(["status", "--machine-readable"], tmp_path, _env(tmp_path, lab, "libvirt")
                   | {"VAGRANT_DEFAULT_PROVIDER": "docker"})
    if res.returncode != 0 and shutil.which("docker") is None:
        pytest.skip("vagrant status needs the docker binary for the docker provider")
    names = [line.split(",")[1] for line in res.stdout.splitlines() if ",state," in line]
    assert names == ["master", "node1", "node2", "node3", "registry"], res.stdout + res.stderr
