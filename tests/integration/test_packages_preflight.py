"""The packages phase stops at once, with one clear message, when pkgs.k8s.io does not answer.

Runs the real playbooks/packages.yml through labctl.provisioning.runner against a systemd-less
container of the dev node image started with `--network none`: no name resolves
and nothing is reachable from it, on any machine, so the phase must fail in its
preflight, quickly, having changed nothing, and say which layers are ready and how
to continue (connect the lab, or kubernetes.packages_dir).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from labctl.machines.image import node_image
from labctl.model import versions
from labctl.model.config import parse_lab
from labctl.provisioning.inventory import render_inventory, write_tree
from labctl.provisioning.runner import run_playbook
from labctl.state import StateDir

pytestmark = pytest.mark.integration
PATCH = versions.KUBERNETES["1.37"].patch  # the pinned patch of the lab's minor (labctl/model/pins.yml)

LAB = {
    "name": "k5-preflight", "provider": "docker", "network": {"cidr": "192.168.56.0/24"},
    "nodes": [{"name": "master", "role": "control-plane", "ip": "192.168.56.21"},
              {"name": "node", "role": "worker", "ip": "192.168.56.31"},
              {"name": "registry", "role": "registry", "ip": "192.168.56.100"}],
    "kubernetes": {"version": "1.37", "proxy_mode": "nftables"},
}


@pytest.fixture(scope="module")
def offline_node():
    # labctl's own plain node image (built here when not cached), in a container with no network
    image, _built = node_image("plain")
    name = f"k5-preflight-{secrets.token_hex(3)}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--entrypoint", "sleep", image,
                    "infinity"], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _run(tmp_path: Path, container: str, **kubernetes):
    data = {**LAB, "kubernetes": {**LAB["kubernetes"], **kubernetes}}
    lab_file = tmp_path / "lab.yml"
    lab_file.write_text(yaml.safe_dump(data))
    # parse_lab, not load_lab: `labctl check` refuses a packages_dir without the packages; the role's own
    # check (the case below) is what is tested here
    lab = parse_lab(data, str(lab_file))
    inv = tmp_path / "inventory"
    write_tree(render_inventory(lab, lab_file), inv)
    # reach "master" through docker exec instead of ssh (host vars win over group_vars; delegate_to
    # localhost keeps its local connection, as in a real run)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts["all"]["children"]["control_plane"]["hosts"]["master"].update(
        {"ansible_connection": "community.docker.docker", "ansible_host": container, "ansible_user": "root",
         "ansible_become": False})
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    t0 = time.monotonic()
    result = run_playbook(StateDir(lab_file, lab.name), "packages.yml", inv / "hosts.yml", limit="master")
    return result, time.monotonic() - t0


def _failure_message(result) -> str:
    msgs = [e["event_data"]["res"].get("msg", "") for e in result.events if e.get("event") == "runner_on_failed"]
    assert len(msgs) == 1, msgs
    return msgs[0]


def test_unreachable_package_source_stops_the_phase_with_one_message(tmp_path: Path, offline_node: str):
    result, seconds = _run(tmp_path, offline_node)
    assert result.rc != 0
    msg = _failure_message(result)
    assert "https://pkgs.k8s.io/core:/stable:/v1.37/deb/ is unreachable from master" in msg
    assert "Layers ready so far:" in msg
    assert "master: host " in msg and "runtime NOT ready" in msg and "registry NOT ready (registry:5000" in msg
    assert "connect the lab to the internet" in msg
    assert "set kubernetes.packages_dir in lab.yml" in msg and f".deb files of version {PATCH}" in msg
    # quick: no apt timeouts (the whole ansible run, including its start-up)
    assert seconds < 90, seconds
    # nothing changed on the node
    assert sum((result.stats.get("changed") or {}).values()) == 0
    probe = subprocess.run(["docker", "exec", offline_node, "ls", "/etc/apt/sources.list.d/kubernetes.sources"],
                           capture_output=True)
    assert probe.returncode != 0


def test_missing_packages_dir_content_is_reported(tmp_path: Path, offline_node: str):
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    (pkgs / f"kubectl_{PATCH}-1.1_amd64.deb").write_bytes(b"")
    result, _ = _run(tmp_path, offline_node, packages_dir=str(pkgs))
    assert result.rc != 0
    msg = _failure_message(result)
    missing = msg.split(f"kubernetes.packages_dir {pkgs} holds no ", 1)[-1].split(" package(s)", 1)[0].split(", ")
    assert {"kubelet", "kubeadm"} <= set(missing) and "kubectl" not in missing, msg
    assert f"package(s) for {PATCH}" in msg


def _pkgs_k8s_io_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("pkgs.k8s.io", 443), timeout=5).close()
        return True
    except OSError:
        return False


def test_provisioning_the_container_lab_stops_at_the_packages_phase(container_lab):
    """The whole container lab: host, runtime, registry and nfs are done, then one clear stop."""
    if _pkgs_k8s_io_reachable():
        pytest.skip("pkgs.k8s.io answers from this machine: this test proves the offline stop")
    res = container_lab.run("provision", "--until", "packages", "--no-progress", timeout=1800)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "FAILED in packages / Stop when the package source does not answer" in out
    assert "https://pkgs.k8s.io/core:/stable:/v1.37/deb/ is unreachable from master, node" in out
    for node in ("master", "node"):
        assert f"{node}: host ready, runtime ready, registry ready" in out, out[-3000:]
    assert "set kubernetes.packages_dir in lab.yml" in out
