"""How a node is reached (labctl/machines/reach.py): one answer for Ansible's inventory, `labctl ssh`, the providers."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest
import yaml

from labctl.commands import ssh as ssh_command
from labctl.machines import reach
from labctl.model.config import load_lab
from labctl.provisioning.inventory import render_inventory
from labctl.state import StateDir
from tests.unit.conftest import base_lab, lab_existing, write_lab


def _vagrant() -> dict:
    d = base_lab()
    d["provider"] = "vagrant"
    return d


LABS = {"docker": base_lab, "vagrant": _vagrant, "existing": lab_existing}


def _lab_file(tmp_path: Path, provider: str) -> Path:
    data = LABS[provider]()
    for n in data["nodes"]:
        if "ssh_key" in n:  # lab.yml's checks want the key file to be there
            key = tmp_path / "lab_ed25519"
            key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n")
            n["ssh_key"] = str(key)
    return write_lab(tmp_path, data)


def _option(argv: list[str], name: str) -> str:
    """The value of `-o name=value` in an ssh argv (the first one: ssh keeps the first it is given)."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"{name}=")]
    assert values, f"no -o {name}= in {argv}"
    return values[0]


def _labctl_ssh_argv(lab_file: Path, node: str, command: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The argv `labctl ssh <node> -- <command>` would exec."""
    seen: list[list[str]] = []
    monkeypatch.setattr(ssh_command.os, "execvp", lambda file, argv: seen.append(list(argv)))
    lab = load_lab(lab_file)
    state = StateDir(lab_file, lab.name)
    state.ensure()
    state.known_hosts.write_text("")
    ssh_command.run(argparse.Namespace(lab=lab_file, node=node, command=["--", *command] if command else []))
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("provider", sorted(LABS))
@pytest.mark.parametrize("command", [[], ["true"]], ids=["shell", "command"])
def test_labctl_ssh_shares_ansibles_masters(provider: str, command: list[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`labctl ssh` gives the ControlPath, ControlMaster, known_hosts and host/port/user Ansible gets from the
    inventory: ssh's %C is then the same, so the session uses (or opens) the same master."""
    lab_file = _lab_file(tmp_path, provider)
    lab = load_lab(lab_file)
    files = render_inventory(lab, lab_file)
    group_vars = yaml.safe_load(files["group_vars/all.yml"])
    hosts = yaml.safe_load(files["hosts.yml"])["all"]["children"]
    ansible = shlex.split(group_vars["ansible_ssh_common_args"])
    for node in lab.nodes:
        argv = _labctl_ssh_argv(lab_file, node.name, command, monkeypatch)
        for name in ("ControlPath", "ControlMaster", "ControlPersist", "UserKnownHostsFile",
                     "StrictHostKeyChecking", "ServerAliveInterval", "ConnectTimeout"):
            assert _option(argv, name) == _option(ansible, name), name
        assert _option(argv, "ControlPath").endswith("/%C")
        # %C hashes the remote host, port and user: the inventory's for this node
        hv = next(h[node.name] for h in (g.get("hosts") or {} for g in hosts.values()) if node.name in h)
        host_vars = {**group_vars, **hv}
        assert argv[-1 - len(command)] == f"{host_vars['ansible_user']}@{host_vars['ansible_host']}"
        port = int(argv[argv.index("-p") + 1]) if "-p" in argv else 22
        assert port == host_vars.get("ansible_port", 22)
        key = host_vars.get("ansible_ssh_private_key_file")
        assert (argv[argv.index("-i") + 1] if "-i" in argv else None) == key
        assert argv[len(argv) - len(command):] == command
        assert ("-t" in argv) == (not command) and ("BatchMode=yes" in argv) == bool(command)


def test_control_path_fits_a_unix_socket_for_a_deep_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / ("very-long-directory-name-" * 3)
    deep.mkdir()
    lab_file = write_lab(deep, base_lab())
    lab = load_lab(lab_file)
    state = StateDir(lab_file, lab.name)
    ansible = shlex.split(yaml.safe_load(render_inventory(lab, lab_file)["group_vars/all.yml"])["ansible_ssh_common_args"])
    argv = _labctl_ssh_argv(lab_file, "master", [], monkeypatch)
    assert _option(argv, "ControlPath") == _option(ansible, "ControlPath") == f"{reach.control_path_dir(state)}/%C"
    assert not _option(argv, "ControlPath").startswith(str(state.root))


def test_targets_per_provider(tmp_path: Path) -> None:
    docker = load_lab(_lab_file(tmp_path, "docker"))
    state = StateDir(tmp_path / "lab.yml", docker.name)
    t = reach.target(docker, "master", state)
    assert (t.user, t.host, t.port, t.key) == ("root", "192.168.56.21", 22, state.ssh_key)
    assert t.known_as == ("master", "192.168.56.21") and t.known_name == "192.168.56.21"
    assert t.known_hosts == state.known_hosts and t.control_path_dir == reach.control_path_dir(state)

    vagrant = load_lab(_lab_file(tmp_path, "vagrant"))
    assert reach.target(vagrant, "node", state).destination == "vagrant@192.168.56.31"

    existing = load_lab(_lab_file(tmp_path, "existing"))
    state = StateDir(tmp_path / "lab.yml", existing.name)
    targets = reach.node_targets(existing, state)
    assert list(targets) == [n.name for n in existing.nodes]
    node = targets["node"]  # ssh_port 2222 (lab_existing)
    assert (node.user, node.host, node.port, node.key) == ("admin", "node.example.test", 2222, tmp_path / "lab_ed25519")
    assert node.known_as == ("[node.example.test]:2222",) == (node.known_name,)
    assert targets["master"].known_name == "master.example.test"


def test_existing_node_without_key_uses_the_users_own_keys(tmp_path: Path) -> None:
    data = lab_existing()
    for n in data["nodes"]:
        del n["ssh_key"]
    lab_file = write_lab(tmp_path, data)
    lab = load_lab(lab_file)
    t = reach.target(lab, "master", StateDir(lab_file, lab.name))
    assert t.key is None
    assert "-i" not in t.argv() and "IdentitiesOnly=yes" not in t.argv()
    assert "ansible_ssh_private_key_file" not in reach.login_vars(t)


def test_readiness_argv_is_strict_and_opens_no_master(tmp_path: Path) -> None:
    lab = load_lab(_lab_file(tmp_path, "docker"))
    state = StateDir(tmp_path / "lab.yml", lab.name)
    argv = reach.target(lab, "master", state).argv(share_master=False, connect_timeout=5)
    assert "StrictHostKeyChecking=yes" in argv
    assert f"UserKnownHostsFile={state.known_hosts}" in argv
    assert "GlobalKnownHostsFile=/dev/null" in argv and "BatchMode=yes" in argv and "ConnectTimeout=5" in argv
    assert argv[argv.index("-i") + 1] == str(state.ssh_key)
    assert not [a for a in argv if a.startswith("Control")]
    assert argv[-1] == "root@192.168.56.21"


def test_control_argv_names_the_same_master(tmp_path: Path) -> None:
    lab = load_lab(_lab_file(tmp_path, "existing"))
    t = reach.target(lab, "node", StateDir(tmp_path / "lab.yml", lab.name))
    assert t.control_argv("exit") == ["ssh", "-o", f"ControlPath={t.control_path}", "-p", "2222", "-O", "exit",
                                      "admin@node.example.test"]
    assert f"ControlPath={t.control_path}" in t.argv()
