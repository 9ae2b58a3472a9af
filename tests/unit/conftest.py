"""Shared helpers for the unit tests: a valid base lab and a way to run the CLI for real."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

BASE_LAB = {
    "name": "k8s-lab",
    "provider": "docker",
    "os": "debian12",
    "network": {"cidr": "192.168.56.0/24"},
    "nodes": [
        {"name": "master", "role": "control-plane", "ip": "192.168.56.21", "cpus": 2, "memory_mb": 2048},
        {"name": "node", "role": "worker", "ip": "192.168.56.31", "cpus": 2, "memory_mb": 2048},
        {"name": "registry", "role": "registry", "ip": "192.168.56.100", "cpus": 1, "memory_mb": 1024},
    ],
    "kubernetes": {"version": "1.37", "pod_subnet": "10.244.0.0/16", "service_subnet": "10.254.0.0/16",
                   "proxy_mode": "nftables"},
    "host": {"firewall": "disabled", "selinux": "permissive"},
    "registry": {"port": 5000},
    "addons": {"cni": "flannel", "ingress": "traefik", "metrics_server": True, "dashboard": "headlamp",
               "monitoring": "kube-prometheus-stack"},
}


def base_lab() -> dict:
    return copy.deepcopy(BASE_LAB)


# Lab shapes several suites need (the golden inventories are made from them).
def lab_one_plus_three() -> dict:
    d = base_lab()
    d["name"] = "big-lab"
    d["nodes"] = [d["nodes"][0]] + [
        {"name": f"node{i}", "role": "worker", "ip": f"192.168.56.{30 + i}", "cpus": 2, "memory_mb": 2048}
        for i in (1, 2, 3)
    ] + [d["nodes"][2]]
    return d


def lab_existing() -> dict:
    d = base_lab()
    d["name"] = "real-lab"
    d["provider"] = "existing"
    d["os"] = "ubuntu2404"
    d["kubernetes"]["proxy_mode"] = "ipvs"
    d["kubernetes"]["version"] = "1.35"
    d["host"]["firewall"] = "ports"
    for n in d["nodes"]:
        n.update(ssh_host=f"{n['name']}.example.test", ssh_user="admin", ssh_key="/keys/lab_ed25519")
    d["nodes"][1]["ssh_port"] = 2222
    return d


def run_labctl(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "labctl", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def write_lab(dir_: Path, data: dict | str, name: str = "lab.yml") -> Path:
    path = dir_ / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def labdir(tmp_path: Path) -> Path:
    return tmp_path


def trusted_template(value):
    """Role files are trusted templates (ansible-core 2.19 renders only trusted strings): mark a value
    read from a role file, recursively, before handing it to Ansible's Templar."""
    from ansible.template import trust_as_template

    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [trusted_template(v) for v in value]
    if isinstance(value, dict):
        return {k: trusted_template(v) for k, v in value.items()}
    return value
