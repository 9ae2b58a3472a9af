"""labctl/verify/plugin.py: the inventory testinfra gets without running ansible-inventory.

`labctl verify` hands testinfra the generated inventory read from its files; it must be
exactly what `ansible-inventory --list` prints for it (the real one is run here), and any
inventory that is not of labctl's shape must be left to Ansible.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from labctl.model.config import parse_lab
from labctl.provisioning.inventory import write_inventory
from labctl.verify.plugin import labctl_inventory, seed_testinfra_inventory
from tests.unit.conftest import REPO, base_lab, lab_existing, lab_one_plus_three, write_lab


def lab_without_registry() -> dict:
    d = base_lab()
    d["nodes"] = d["nodes"][:2]
    d["kubernetes"]["mirror_images"] = False
    return d


LABS = {"docker": base_lab, "no-registry": lab_without_registry, "existing": lab_existing,
        "one-plus-three": lab_one_plus_three}


def generated(tmp_path: Path, data: dict) -> Path:
    lab_file = write_lab(tmp_path, data)
    return write_inventory(parse_lab(data, str(lab_file)), lab_file)


def ansible_inventory(hosts_file: Path) -> dict:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_VERBOSITY": "0"}
    out = subprocess.run(["ansible-inventory", "--list", "-i", str(hosts_file)], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    data = json.loads(out.stdout)
    data["_meta"].pop("profile", None)  # ansible-inventory's own bookkeeping, testinfra never reads it
    return data


@pytest.mark.parametrize("lab", sorted(LABS))
def test_same_as_ansible_inventory(tmp_path: Path, lab: str) -> None:
    hosts_file = generated(tmp_path, LABS[lab]())
    assert labctl_inventory(hosts_file) == ansible_inventory(hosts_file)


def _edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))


@pytest.mark.parametrize("case", ["host_vars dir", "other group_vars file", "group vars in hosts.yml",
                                  "host directly under all", "ini inventory", "a YAML date"])
def test_other_shapes_are_left_to_ansible(tmp_path: Path, case: str) -> None:
    hosts_file = generated(tmp_path, base_lab())
    inv = hosts_file.parent
    if case == "host_vars dir":
        (inv / "host_vars").mkdir()
        (inv / "host_vars" / "master.yml").write_text("lab_ip: 10.0.0.1\n")
    elif case == "other group_vars file":
        (inv / "group_vars" / "workers.yml").write_text("lab_x: 1\n")
    elif case == "group vars in hosts.yml":
        _edit(hosts_file, lambda d: d["all"]["children"]["workers"].update(vars={"lab_x": 1}))
    elif case == "host directly under all":
        _edit(hosts_file, lambda d: d["all"].update(hosts={"extra": {"ansible_host": "10.0.0.9"}}))
    elif case == "ini inventory":
        hosts_file = inv / "hosts.ini"
        hosts_file.write_text("[workers]\nnode\n")
    elif case == "a YAML date":
        with (inv / "group_vars" / "all.yml").open("a") as fh:
            fh.write("lab_built: 2026-01-02\n")
    assert labctl_inventory(hosts_file) is None


def test_seeded_runner_never_runs_ansible_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testinfra.utils import ansible_runner

    def refuse(*args, **kwargs):
        raise AssertionError("ansible-inventory was run")

    monkeypatch.setattr(ansible_runner, "get_ansible_inventory", refuse)
    monkeypatch.setattr(ansible_runner.AnsibleRunner, "_runners", {})
    hosts_file = generated(tmp_path, base_lab())
    spelled_otherwise = str(tmp_path / "inventory" / ".." / "inventory" / "k8s-lab" / "hosts.yml")
    assert seed_testinfra_inventory([str(hosts_file), spelled_otherwise])
    for path in (str(hosts_file), spelled_otherwise):
        runner = ansible_runner.AnsibleRunner.get_runner(path)
        assert runner.get_hosts("k8s_cluster") == ["master", "node"]
        assert runner.get_variables("registry")["lab_role"] == "registry"
        host = runner.get_host("master")
        assert host is not None and host.backend.get_connection_type() == "ssh"
        assert "ControlPath=" in (host.backend.ssh_extra_args or "")


def test_unknown_inventory_is_not_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testinfra.utils import ansible_runner

    monkeypatch.setattr(ansible_runner.AnsibleRunner, "_runners", {})
    ini = tmp_path / "hosts.ini"
    ini.write_text("[workers]\nnode\n")
    assert not seed_testinfra_inventory([str(ini)])
    assert "inventory" not in vars(ansible_runner.AnsibleRunner.get_runner(str(ini)))
