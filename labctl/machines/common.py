"""What the providers share: host checks, Vagrant invocation, SSH readiness."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labctl.errors import RunFailed, UserError
from labctl.machines import NodeStatus, Progress
from labctl.machines.reach import NodeTarget
from labctl.model.config import Lab, Node
from labctl.state import REPO_ROOT, StateDir

VAGRANTFILE = REPO_ROOT / "Vagrantfile"
INOTIFY_PER_NODE = 7  # inotify instances a systemd container uses


def require_binary(name: str, how: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f"{name} is not installed: {how}")
    return path


def mem_available_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def check_memory(nodes: Sequence[Node]) -> None:
    """Not enough memory for the nodes about to be created: exit 2."""
    need = sum(n.memory_mb for n in nodes)
    avail = mem_available_mb()
    if nodes and avail is not None and need > avail:
        raise UserError(
            f"not enough memory: the nodes to create ({', '.join(n.name for n in nodes)}) ask for {need} MB "
            f"(sum of memory_mb) but only {avail} MB are available (MemAvailable); "
            "lower nodes[*].memory_mb or free memory")


def host_addresses() -> dict[str, str]:
    """{ip: interface} of the host's IPv4 addresses."""
    res = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10)
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out[parts[3].split("/")[0]] = parts[1]
    return out


def check_ips_free_on_host(nodes: Iterable[Node]) -> None:
    addrs = host_addresses() if shutil.which("ip") else {}
    for n in nodes:
        if str(n.ip) in addrs:
            raise UserError(f"nodes: {n.name}'s address {n.ip} is already in use on this host "
                            f"(interface {addrs[str(n.ip)]}); choose another address")


def inotify_in_use() -> int:
    """inotify instances held by processes of this user (what max_user_instances limits)."""
    uid = os.getuid()
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                    count += 1
            except OSError:
                continue
    return count


def inotify_problem(limit: int, used: int, new_nodes: int) -> str | None:
    """The message when `new_nodes` systemd containers would exceed max_user_instances, else None."""
    need = INOTIFY_PER_NODE * new_nodes
    if new_nodes == 0 or used + need <= limit:
        return None
    return (f"fs.inotify.max_user_instances is {limit} and {used} are in use; {new_nodes} new systemd "
            f"container(s) need about {need} more (systemd in a container would fail with exit 255). Raise it: "
            f"sudo sysctl -w fs.inotify.max_user_instances={max(512, 2 * (used + need))} "
            "(and put it in /etc/sysctl.d/ to keep it)")


def check_inotify(new_nodes: int) -> None:
    """systemd in a container needs ~7 inotify instances; say so before systemd fails with 255."""
    if new_nodes == 0:
        return
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return
    problem = inotify_problem(limit, inotify_in_use(), new_nodes)
    if problem:
        raise UserError(problem)


def wait_ready(lab: Lab, targets: dict[str, NodeTarget], timeout: float,
               progress: Progress, systemd: bool = True, sudo: bool = False) -> dict[str, NodeStatus]:
    """Wait (bounded) until each node answers SSH with the lab key and systemd is running or degraded.

    targets: {node name: how to reach it (reach.node_targets)}; no master is opened (share_master=False):
    the nodes may still be booting. Returns {name: NodeStatus}; state is running, degraded
    (detail names the failed units) or a failure state with its cause.
    """
    script = (
        "h=$(hostname); ips=$(hostname -I 2>/dev/null | tr ' ' ','); "
        + ("s=$(timeout 60 systemctl is-system-running --wait 2>/dev/null); " if systemd else "s=running; ")
        + ("sudo -n true 2>/dev/null || s=nosudo; " if sudo else "")
        + "f=$(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | tr '\\n' ' '); "
        + "echo \"$h|$ips|$s|$f\""
    )
    by_name = {n.name: n for n in lab.nodes}

    def one(name: str) -> NodeStatus:
        t = targets[name]
        node = by_name[name]
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            argv = t.argv(share_master=False, connect_timeout=5) + [script]
            try:
                res = subprocess.run(argv, capture_output=True, text=True, timeout=90)
                if res.returncode == 0 and res.stdout.count("|") >= 3:
                    hostname, ips, sstate, failed = res.stdout.strip().split("|", 3)
                    if sstate in ("running", "degraded"):
                        if hostname != name:
                            return NodeStatus(name, node.role, str(node.ip), "failed",
                                              f"answers as host {hostname!r}, expected {name!r}")
                        detail = f"failed units: {failed.strip()}" if sstate == "degraded" else ""
                        return NodeStatus(name, node.role, str(node.ip), sstate, detail)
                    if sstate == "nosudo":
                        return NodeStatus(name, node.role, str(node.ip), "failed",
                                          f"{t.destination}: passwordless sudo is not allowed (sudo -n true failed)")
                    last = f"systemd is {sstate or 'unknown'}" + (f" (failed: {failed.strip()})" if failed.strip() else "")
                else:
                    last = (res.stderr.strip().splitlines() or [f"ssh exit {res.returncode}"])[-1]
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            if time.monotonic() > deadline:
                return NodeStatus(name, node.role, str(node.ip), "failed", f"not ready after {int(timeout)} s: {last}")
            time.sleep(0.5)

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(targets)))) as pool:
        results = dict(zip(targets, pool.map(one, targets), strict=True))
    return results


def raise_on_failures(results: Iterable[NodeStatus]) -> None:
    failed = [r for r in results if r.state not in ("running", "degraded")]
    if failed:
        raise RunFailed("; ".join(f"node {r.name} did not come up: {r.detail or r.state}" for r in failed))


# ---------------------------------------------------------------------------
# Vagrant
# ---------------------------------------------------------------------------


def vagrant_env(state: StateDir, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Vagrant's environment for this lab (the Vagrantfile's input: machines/vagrantfile.vagrant_env)."""
    env = dict(os.environ)
    env.update({
        "VAGRANT_VAGRANTFILE": str(VAGRANTFILE),
        "VAGRANT_DOTFILE_PATH": str(state.root / "vagrant"),
        "VAGRANT_NO_COLOR": "1",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
    })
    env.update(extra or {})
    return env


def run_streamed(argv: Sequence[str], what: str, timeout: float, on_line: Callable[[str], None] | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None, stdout: int | None = None) -> list[str]:
    """Run argv (stdin closed), streaming its non-empty lines to on_line; its lines, or RunFailed naming
    `what` with the last lines when it fails or outlasts timeout (the box build, the node image build and
    Vagrant share it). With `stdout` (a file descriptor: a pipe into another command) the command's
    output goes there and the lines streamed are its stderr."""
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, text=True, errors="replace", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if stdout is None else stdout,
                            stderr=subprocess.STDOUT if stdout is None else subprocess.PIPE)
    stream = proc.stdout if stdout is None else proc.stderr
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert stream is not None
    for line in stream:
        line = line.rstrip()
        if line:
            lines.append(line)
            if on_line is not None:
                on_line(line)
        if time.monotonic() > deadline:
            proc.kill()
            raise RunFailed(f"{what} took longer than {int(timeout)} s; last lines:\n" + "\n".join(lines[-10:]))
    rc = proc.wait()
    if rc != 0:
        raise RunFailed(f"{what} failed (exit {rc}):\n" + "\n".join(lines[-15:]))
    return lines


def run_vagrant(args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float,
                progress: Progress) -> str:
    """Run `vagrant ARGS`, streaming its lines to progress; RunFailed with its last lines on failure."""
    argv = ["vagrant", *args, "--no-tty"] if args and args[0] != "ssh" else ["vagrant", *args]
    return "\n".join(run_streamed(argv, f"vagrant {' '.join(args)}", timeout, progress, env, cwd))


def docker_networks() -> dict[str, list[ipaddress.IPv4Network]]:
    """{network name: [IPv4 subnets]} of every docker network."""
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True, timeout=30).stdout.split()
    if not ids:
        return {}
    res = subprocess.run(
        ["docker", "network", "inspect", "--format", "{{.Name}}|{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
        capture_output=True, text=True, timeout=30)
    out: dict[str, list[ipaddress.IPv4Network]] = {}
    for line in res.stdout.splitlines():
        name, _, subnets = line.partition("|")
        nets = []
        for s in subnets.split():
            try:
                net = ipaddress.ip_network(s, strict=False)
            except ValueError:
                continue
            if isinstance(net, ipaddress.IPv4Network):
                nets.append(net)
        out[name] = nets
    return out


def check_subnet_free(cidr: ipaddress.IPv4Network, ours: str | None) -> None:
    """The lab's subnet already used by another docker network: exit 2, naming it."""
    if shutil.which("docker") is None:
        return
    for name, nets in docker_networks().items():
        if name == ours:
            continue
        for net in nets:
            if net.overlaps(cidr):
                raise UserError(f"network.cidr {cidr} overlaps docker network {name!r} ({net}); "
                                f"choose another network.cidr or remove that network")
