"""The runner's settings: ControlPath dir within the unix-socket limit and shared with the inventory,
fact cache in the state dir, host keys checked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from labctl.machines.reach import control_path_dir
from labctl.model.config import parse_lab
from labctl.provisioning.inventory import group_vars_document
from labctl.provisioning.runner import ansible_env
from labctl.state import StateDir
from tests.unit.conftest import base_lab, write_lab

SUN_PATH_MAX = 107  # usable bytes of sockaddr_un.sun_path


def _socket_len(d: Path) -> int:
    # %C is 40 hex chars; ssh adds ".<16 hex>" while it creates the master socket
    return len(f"{d}/{'c' * 40}.{'f' * 16}")


def test_short_state_dir_keeps_sockets_in_the_state_dir(tmp_path: Path):
    short = Path("/tmp") / f"l{os.getpid()}"
    short.mkdir(exist_ok=True)
    state = StateDir(short / "lab.yml", "k8s-lab")
    assert control_path_dir(state) == state.control_dir
    assert _socket_len(control_path_dir(state)) <= SUN_PATH_MAX
    short.rmdir()


def test_long_state_dir_falls_back_to_a_private_short_dir(tmp_path: Path):
    deep = tmp_path / ("very-long-directory-name-" * 3)
    state = StateDir(deep / "lab.yml", "a-rather-long-lab-name")
    d = control_path_dir(state)
    assert d != state.control_dir
    assert str(d).startswith(f"/tmp/labctl-{os.getuid()}/")
    assert _socket_len(d) <= SUN_PATH_MAX
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(d.parent.stat().st_mode) == 0o700
    assert control_path_dir(state) == d  # stable for the same lab
    other = StateDir(deep / "lab.yml", "another-rather-long-lab-name")
    assert control_path_dir(other) != d  # one dir per lab


def test_inventory_and_ansible_use_the_same_control_path_dir(tmp_path: Path):
    lab_file = write_lab(tmp_path, base_lab())
    lab = parse_lab(base_lab(), str(lab_file))
    state = StateDir(lab_file, lab.name)
    env = ansible_env(state)
    common = group_vars_document(lab, state)["ansible_ssh_common_args"]
    assert f"ControlPath={env['ANSIBLE_SSH_CONTROL_PATH_DIR']}/%C" in common
    assert f"UserKnownHostsFile={state.known_hosts}" in common


def test_tuned_env_keeps_the_fact_cache_and_checks_host_keys(tmp_path: Path):
    state = StateDir(tmp_path / "lab.yml", "k8s-lab")
    env = ansible_env(state, forks=3)
    assert env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] == str(state.facts_dir)
    assert env["ANSIBLE_GATHERING"] == "smart"
    assert env["ANSIBLE_PIPELINING"] == "1"
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert env["ANSIBLE_FORKS"] == "3"
    defaults = ansible_env(state, tuned=False)
    assert defaults["ANSIBLE_GATHERING"] == "implicit" and defaults["ANSIBLE_PIPELINING"] == "0"
    assert defaults["ANSIBLE_HOST_KEY_CHECKING"] == "True"
