"""`labctl up / status / ssh / down` on a real 3-node container lab (dockerd, Vagrant, sshd, systemd)."""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import ContainerLab

pytestmark = pytest.mark.integration


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def containers(lab: ContainerLab) -> dict[str, dict]:
    """{container name: {id, running, started}} of the lab's containers."""
    ids = docker("ps", "-aq", "--no-trunc", "--filter", f"label=labctl.lab={lab.name}").stdout.split()
    if not ids:
        return {}
    info = json.loads(docker("inspect", *ids).stdout)
    return {c["Name"].lstrip("/"): {"id": c["Id"], "running": c["State"]["Running"],
                                    "started": c["State"]["StartedAt"]} for c in info}


def remote(lab: ContainerLab, node: str, script: str) -> subprocess.CompletedProcess[str]:
    return lab.run("ssh", node, "--", script, timeout=60)


def node_facts(lab: ContainerLab, node: str) -> dict[str, str]:
    res = remote(lab, node, "echo host=$(hostname); echo ips=$(hostname -I); "
                 "echo systemd=$(systemctl is-system-running); echo failed=$(systemctl --failed --no-legend --plain)")
    assert res.returncode == 0, f"{node}: labctl ssh failed: {res.stderr}"
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def test_every_node_answers_ssh_with_the_lab_key(container_lab: ContainerLab) -> None:
    known = (container_lab.state_dir / "ssh" / "known_hosts").read_text()
    host_keys = set()
    for n in container_lab.nodes:
        facts = node_facts(container_lab, n["name"])
        assert facts["host"] == n["name"]
        assert n["ip"] in facts["ips"].split(), facts
        assert facts["systemd"] in ("running", "degraded"), f"{n['name']}: failed units: {facts['failed']}"
        # the host key in known_hosts is the node's own, and every node has its own
        key = docker("exec", container_lab.container(n["name"]), "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout
        assert key.split()[1] in known
        host_keys.add(key.split()[1])
    assert len(host_keys) == len(container_lab.nodes), "nodes share SSH host keys"


def test_node_image_has_no_host_keys(container_lab: ContainerLab) -> None:
    """Host keys are made per node at first boot; the image every node starts from has none."""
    image = docker("inspect", "--format", "{{.Image}}", container_lab.container(container_lab.nodes[0]["name"])).stdout
    res = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image.strip(), "-c",
                 "ls /etc/ssh/ | grep -c ssh_host_ || true")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0"


def test_plain_ssh_with_strict_host_key_checking(container_lab: ContainerLab) -> None:
    """What Ansible does: plain ssh, the lab key, the lab's known_hosts, StrictHostKeyChecking=yes."""
    ssh_dir = container_lab.state_dir / "ssh"
    master = container_lab.nodes[0]
    res = subprocess.run(
        ["ssh", "-i", str(ssh_dir / "id_ed25519"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={ssh_dir / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
         "-o", "ConnectTimeout=10", f"root@{master['ip']}", "id -un"],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "root"
    assert oct((ssh_dir / "id_ed25519").stat().st_mode & 0o777) == "0o600"


def test_ssh_returns_the_remote_exit_code(container_lab: ContainerLab) -> None:
    res = container_lab.run("ssh", container_lab.nodes[1]["name"], "--", "exit 7", timeout=60)
    assert res.returncode == 7


def test_status_shows_every_node_running(container_lab: ContainerLab) -> None:
    res = container_lab.run("status", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    for n in container_lab.nodes:
        line = next(ln for ln in res.stdout.splitlines() if f" {n['name']} " in ln)
        assert n["ip"] in line and n["role"] in line
        assert "running" in line or "degraded" in line


def test_second_up_changes_nothing(container_lab: ContainerLab) -> None:
    before = containers(container_lab)
    known = (container_lab.state_dir / "ssh" / "known_hosts").read_text()
    hosts_yml = container_lab.dir / "inventory" / container_lab.name / "hosts.yml"
    mtime = hosts_yml.stat().st_mtime_ns
    start = time.monotonic()
    res = container_lab.run("up", timeout=120)
    took = time.monotonic() - start
    assert res.returncode == 0, res.stdout + res.stderr
    assert containers(container_lab) == before  # same containers, not restarted
    assert (container_lab.state_dir / "ssh" / "known_hosts").read_text() == known
    assert hosts_yml.stat().st_mtime_ns == mtime
    assert took < 15, f"a repeated up took {took:.1f} s"


def test_killed_node_is_repaired_by_up(container_lab: ContainerLab) -> None:
    victim = container_lab.nodes[1]["name"]
    before = containers(container_lab)
    assert docker("kill", container_lab.container(victim)).returncode == 0
    status = container_lab.run("status", timeout=120)
    assert status.returncode == 1
    assert any(victim in ln and "exited" in ln for ln in status.stdout.splitlines()), status.stdout
    res = container_lab.run("up", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    after = containers(container_lab)
    assert after[container_lab.container(victim)]["running"]
    assert after[container_lab.container(victim)]["id"] == before[container_lab.container(victim)]["id"]
    facts = node_facts(container_lab, victim)
    assert facts["systemd"] in ("running", "degraded"), facts


def test_down_leaves_nothing_behind_and_up_rebuilds(container_lab: ContainerLab) -> None:
    """Runs down for real, then brings the lab back so later tests of the session still have it."""
    ids = [c["id"] for c in containers(container_lab).values()]
    volumes = [m["Name"] for cid in ids for m in json.loads(docker("inspect", cid).stdout)[0]["Mounts"]
               if m["Type"] == "volume"]
    assert len(volumes) == 2 * len(container_lab.nodes)  # /var/lib/containerd and /var/lib/docker per node
    try:
        res = container_lab.run("down", "--yes", timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert containers(container_lab) == {}
        assert docker("network", "inspect", f"{container_lab.name}-net").returncode != 0
        left = [v for v in volumes if docker("volume", "inspect", v).returncode == 0]
        assert left == [], f"volumes left behind: {left}"
        image = docker("image", "inspect", "labctl/node:debian12")
        assert image.returncode == 0, "down must keep the node image"
    finally:
        up = container_lab.run("up", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
