"""Machine providers: the refusals a user sees before anything is created, keys, the image recipe.

The refusals run the real CLI against the real Docker engine (skipped only where docker is
absent) and check exit 2, the message, no traceback and that nothing was created: no
container, no network, no state directory.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.machines import common, image, sshkeys
from labctl.state import StateDir
from tests.unit.conftest import REPO, base_lab, run_labctl, write_lab


def _free_cidr() -> str:
    """LABCTL_UT_CIDR, else the first of a few /24s no docker network on this machine uses."""
    if os.environ.get("LABCTL_UT_CIDR"):
        return os.environ["LABCTL_UT_CIDR"]
    candidates = ["192.168.62.0/24", "192.168.61.0/24", "10.231.62.0/24", "10.231.63.0/24", "10.231.64.0/24"]
    if shutil.which("docker") is None:
        return candidates[0]
    try:
        used = [net for nets in common.docker_networks().values() for net in nets]
    except (OSError, subprocess.SubprocessError):
        return candidates[0]
    for c in candidates:
        if not any(ipaddress.IPv4Network(c).overlaps(u) for u in used):
            return c
    return candidates[0]


CIDR = _free_cidr()
PREFIX = CIDR.rsplit(".", 1)[0]  # "192.168.62"
needs_docker = pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed")


def docker_lab(tmp_path: Path, name: str, **changes) -> Path:
    lab = base_lab()
    lab["name"] = name
    lab["network"]["cidr"] = CIDR
    for i, host in enumerate((21, 31, 100)):
        lab["nodes"][i]["ip"] = f"{PREFIX}.{host}"
    lab.update(changes)
    return write_lab(tmp_path, lab)


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


def assert_refused(res: subprocess.CompletedProcess[str], tmp_path: Path, name: str, *words: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in res.stderr, res.stderr
    assert not (tmp_path / ".labctl").exists(), "a refused `up` must not create the state directory"
    if shutil.which("docker"):
        assert docker("ps", "-aq", "--filter", f"label=labctl.lab={name}").stdout.strip() == ""
        assert docker("network", "inspect", f"{name}-net").returncode != 0


# -- refusals (exit 2, nothing created) ------------------------------------------------------

@needs_docker
def test_subnet_used_by_another_docker_network(tmp_path: Path) -> None:
    other = f"ut-other-{os.getpid()}"
    assert docker("network", "create", "--subnet", f"{PREFIX}.128/25", other).returncode == 0
    try:
        docker_lab(tmp_path, "ut-subnet")
        res = run_labctl("up", cwd=tmp_path)
    finally:
        docker("network", "rm", other)
    assert_refused(res, tmp_path, "ut-subnet", "network.cidr", other)


@needs_docker
def test_node_ip_in_use(tmp_path: Path) -> None:
    name = "ut-ipuse"
    assert docker("network", "create", "--subnet", CIDR, "--gateway", f"{PREFIX}.1", f"{name}-net").returncode == 0
    squatter = f"ut-squatter-{os.getpid()}"
    node_image, _built = image.node_image("plain")  # built once on a fresh machine, then cached
    try:
        run = docker("run", "-d", "--name", squatter, "--network", f"{name}-net", "--ip", f"{PREFIX}.31",
                     "--entrypoint", "sleep", node_image, "120")
        assert run.returncode == 0, run.stderr
        docker_lab(tmp_path, name)
        res = run_labctl("up", cwd=tmp_path)
    finally:
        docker("rm", "-f", squatter)
        docker("network", "rm", f"{name}-net")
    assert res.returncode == 2, res.stderr
    assert f"{PREFIX}.31" in res.stderr and squatter in res.stderr and "nodes: node" in res.stderr
    assert "Traceback" not in res.stderr
    assert docker("ps", "-aq", "--filter", f"label=labctl.lab={name}").stdout.strip() == ""


@needs_docker
def test_not_enough_memory(tmp_path: Path) -> None:
    path = docker_lab(tmp_path, "ut-mem")
    text = path.read_text().replace("memory_mb: 1024", "memory_mb: 262144").replace("memory_mb: 2048", "memory_mb: 262144")
    path.write_text(text)
    res = run_labctl("up", cwd=tmp_path)
    assert_refused(res, tmp_path, "ut-mem", "not enough memory", "MemAvailable")


def test_docker_not_installed(tmp_path: Path) -> None:
    docker_lab(tmp_path, "ut-nodocker")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "labctl", "up"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert_refused(res, tmp_path, "ut-nodocker", "docker is not installed", "apt-get install -y docker.io vagrant")


@needs_docker
def test_vagrant_not_installed(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(shutil.which("docker") or "docker")
    docker_lab(tmp_path, "ut-novagrant")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{bin_dir}", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "labctl", "up"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert_refused(res, tmp_path, "ut-novagrant", "vagrant is not installed")


@needs_docker
def test_docker_daemon_not_running(tmp_path: Path) -> None:
    docker_lab(tmp_path, "ut-nodaemon")
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "labctl", "up"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "Docker daemon" in res.stderr and "start" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / ".labctl").exists()


def test_down_asks_for_confirmation(tmp_path: Path) -> None:
    docker_lab(tmp_path, "ut-confirm")
    res = subprocess.run([sys.executable, "-m", "labctl", "down"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2
    assert "--yes" in res.stderr


def test_ssh_unknown_node(tmp_path: Path) -> None:
    docker_lab(tmp_path, "ut-sshnode")
    res = run_labctl("ssh", "nosuchnode", cwd=tmp_path)
    assert res.returncode == 2
    assert "no node named 'nosuchnode'" in res.stderr


def test_existing_unreachable_node_fails_naming_it(tmp_path: Path) -> None:
    """provider existing: a node that does not answer SSH makes `up` exit 1 naming the node and the cause."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lab = base_lab()
    lab["provider"] = "existing"
    for n in lab["nodes"]:
        n.update({"ssh_host": "127.0.0.1", "ssh_user": "root", "ssh_port": port})
    write_lab(tmp_path, lab)
    res = run_labctl("up", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "node master did not come up" in res.stderr and f"127.0.0.1:{port}" in res.stderr
    assert "Traceback" not in res.stderr


# -- pieces -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("limit", "used", "new", "refused"), [
    (128, 10, 3, False),
    (128, 100, 4, False),   # 100 + 28 = 128: just fits
    (128, 100, 5, True),
    (128, 0, 20, True),     # past ~18 nodes the default limit is not enough
    (8192, 0, 100, False),
    (128, 127, 0, False),   # nothing to create
])
def test_inotify_limit(limit: int, used: int, new: int, refused: bool) -> None:
    problem = common.inotify_problem(limit, used, new)
    assert (problem is not None) == refused
    if problem:
        assert "fs.inotify.max_user_instances" in problem and "sysctl -w" in problem


def test_lab_key_is_private_and_stable(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "lab.yml", "k")
    key = sshkeys.ensure_keypair(state)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    first = sshkeys.public_key(state)
    assert first.startswith("ssh-ed25519 ")
    sshkeys.ensure_keypair(state)
    assert sshkeys.public_key(state) == first


def test_known_hosts_entries_are_replaced_per_node(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "lab.yml", "k")
    state.ensure()
    assert sshkeys.record_host(state, ["master", "10.0.0.21"], ["ssh-ed25519 AAAA1 root@x"])
    assert sshkeys.record_host(state, ["node", "10.0.0.31"], ["ssh-ed25519 BBBB1 root@y"])
    assert not sshkeys.record_host(state, ["master", "10.0.0.21"], ["ssh-ed25519 AAAA1 root@x"])
    assert sshkeys.record_host(state, ["master", "10.0.0.21"], ["ssh-ed25519 AAAA2 root@x"])
    lines = state.known_hosts.read_text().splitlines()
    assert lines == ["node,10.0.0.31 ssh-ed25519 BBBB1", "master,10.0.0.21 ssh-ed25519 AAAA2"]
    assert oct(state.known_hosts.stat().st_mode & 0o777) == "0o600"
    sshkeys.forget_hosts(state, ["node"])
    assert state.known_hosts.read_text().splitlines() == ["master,10.0.0.21 ssh-ed25519 AAAA2"]


def test_image_tag_follows_the_recipe() -> None:
    r = image.recipe()
    assert image.image_tag(r) == image.image_tag(image.recipe())  # stable
    changed = {**r, "packages": [*r["packages"], "vim"]}  # type: ignore[list-item]
    assert image.image_tag(changed) != image.image_tag(r)
    assert image.image_tag(r).startswith("labctl/node:debian12-")
    for pkg in ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "sudo", "iproute2", "ca-certificates"):
        assert pkg in r["packages"]


def test_image_has_no_host_keys_and_makes_them_at_boot() -> None:
    assert 'rm -f "$root"/etc/ssh/ssh_host_*' in image.CUSTOMIZE
    assert "ssh-keygen -A" in image.NODE_INIT
    assert "Before=ssh.service" in image.NODE_INIT_UNIT


def test_apt_mirror_comes_from_the_host_sources() -> None:
    sources = {"debian.sources": "Types: deb\nURIs: http://mirror.example.org/debian\nSuites: bookworm\n"
                                 "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"}
    assert image.bootstrap_mirror(sources) == "http://mirror.example.org/debian"
    assert image.bootstrap_mirror({"x.list": "deb [signed-by=/k.gpg] https://m.example/debian bookworm main\n"}) \
        == "https://m.example/debian"
    assert image.bootstrap_mirror({}) == "http://deb.debian.org/debian"
    for text in image.host_apt_sources().values():
        assert "debian" in text


@pytest.mark.skipif(shutil.which("VBoxManage") is not None, reason="VirtualBox is installed here")
def test_vm_lab_without_virtualbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # VirtualBox asked for (without it installed the VM lab's default is libvirt)
    monkeypatch.setenv("LABCTL_VM_PROVIDER", "virtualbox")
    lab = base_lab()
    lab["provider"] = "vagrant"
    lab["kubernetes"]["proxy_mode"] = "nftables"
    write_lab(tmp_path, lab)
    res = run_labctl("up", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "VBoxManage is not installed" in res.stderr and "VirtualBox" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / ".labctl").exists()


def test_run_streamed_streams_stderr_when_stdout_goes_to_a_pipe(tmp_path):
    """The node image build pipes mmdebstrap's tar into `docker import` and streams its progress (stderr)
    through the same run_streamed as Vagrant and the box build."""
    import os
    import subprocess

    seen: list[str] = []
    read_end, write_end = os.pipe()
    reader = subprocess.Popen(["cat"], stdin=read_end, stdout=subprocess.PIPE)
    os.close(read_end)
    try:
        lines = common.run_streamed(["sh", "-c", "echo one >&2; echo tar-bytes; echo two >&2"], "toy", 30,
                                    seen.append, stdout=write_end)
    finally:
        os.close(write_end)
    out, _ = reader.communicate(timeout=30)
    assert lines == seen == ["one", "two"]
    assert out == b"tar-bytes\n"
    from labctl.errors import RunFailed

    with pytest.raises(RunFailed, match=r"toy failed \(exit 3\):\nbroke"):
        common.run_streamed(["sh", "-c", "echo broke; exit 3"], "toy", 30)
