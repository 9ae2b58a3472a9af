"""Read a node's state once: many read-only commands in ONE ssh round trip, run side by side there.

A check over testinfra's ssh backend costs one ssh round trip per command (~20-30 ms over the
ControlPath), and the node layers issue ~180 small reads (cat, stat, systemctl is-active ...).
Each suite module lists the reads its checks make per node (`snapshot_reads(node)`); the
session fixture `snapshots` (conftest.py) runs them on every node at once and the checks
read the answers through the `snap` fixture, a testinfra host:

    def test_hostname(snap):
        out = snap.run("hostname")                  # the CommandResult of the batch's `hostname`
        snap.file("/etc/hosts").content_string      # testinfra's modules read from the batch too

A command that was not prefetched runs live (and is listed in the pytest log: the prefetch
list wants it), so a missing read costs time, never a wrong answer. A node whose batch could
not run at all answers every read live, as if there were no snapshot: the checks then fail
with ssh's own error, as before.

Only for reads: anything that changes a node (a push, a restart) and any read that must come
after such a change uses `host`, live. The reads helpers below spell commands exactly as
testinfra's modules do (tests/unit/test_verify_snapshot.py holds them to that).
"""

from __future__ import annotations

import concurrent.futures
import io
import tarfile
from pathlib import PurePosixPath
from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

Host = testinfra.host.Host


def q(command: str, *args: str) -> str:
    """A command as testinfra spells it: `q("cat -- %s", path)`."""
    return BaseBackend.quote(command, *args)


# What testinfra's modules run, per module (testinfra 10: modules/systeminfo.py, file.py, service.py).
SYSTEM_INFO = ["uname -s", "uname -m", "cat /etc/os-release"]  # host.system_info on Linux
SERVICE_TYPE = [*SYSTEM_INFO, q("test -d %s", "/run/systemd/system/")]  # host.service picks systemd


FILE = {"exists": "test -e %s", "is_directory": "test -d %s", "content": "cat -- %s",
        "mode": "stat -Lc %%a %s", "user": "stat -Lc %%U %s"}


def file_reads(path: str, *attrs: str) -> list[str]:
    """host.file(path).<attr> for each attr of FILE (default: content, i.e. .content_string)."""
    return [*SYSTEM_INFO, *(q(FILE[attr], path) for attr in attrs or ("content",))]


def service_reads(name: str) -> list[str]:
    """host.service(name): .is_running, .is_enabled (systemd, with testinfra's SysV fallback)."""
    return [*SERVICE_TYPE, q("systemctl is-active %s", name), q("systemctl is-enabled %s", name),
            q("find -L /etc/rc?.d/ -name %s", "S??" + name)]


def command_v(name: str) -> list[str]:
    """host.exists(name)."""
    return ["command -v command", q("command -v %s", name)]


# ---------------------------------------------------------------- one round trip

def batch_script(commands: list[str]) -> str:
    """A POSIX shell script running every command at once, each with its own stdin/stdout/stderr/rc.

    It writes `<i>.o`, `<i>.e` and `<i>.r` (stdout, stderr, exit status of commands[i]) into a
    temporary directory and prints that directory as a tar stream (one process encodes it all).
    It is sent as the command itself, so each command runs in a subshell of the shell a live
    command gets (the login shell over ssh; `sudo /bin/sh -c` with become).
    """
    lines = ['d=$(mktemp -d) || exit 97', "trap 'rm -rf \"$d\"' EXIT"]
    for i, command in enumerate(commands):
        # a subshell of its own (an `exit` in the command ends only the command); the newline ends a comment
        lines.append(f'{{ ( {command}\n) </dev/null >"$d/{i}.o" 2>"$d/{i}.e"; echo $? >"$d/{i}.r"; }} &')
    lines += ["wait", 'tar -C "$d" -cf - .']
    return "\n".join(lines) + "\n"


def parse_batch(live: Host, commands: list[str], stream: bytes) -> dict[str, CommandResult]:
    """The results in a batch's tar stream, as testinfra's CommandResults; a command without all three is left out."""
    try:
        with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
            files = {PurePosixPath(m.name).name: tar.extractfile(m).read()  # type: ignore[union-attr]
                     for m in tar.getmembers() if m.isfile()}
    except tarfile.TarError:
        return {}
    results: dict[str, CommandResult] = {}
    for i, command in enumerate(commands):
        rc, out, err = files.get(f"{i}.r", b"").strip(), files.get(f"{i}.o"), files.get(f"{i}.e")
        if rc.isdigit() and out is not None and err is not None:
            results[command] = live.backend.result(int(rc), live.backend.encode(command), out, err)
    return results


class SnapshotBackend(BaseBackend):
    """Answers a prefetched command from the batch; runs anything else on the live host."""

    NAME = "snapshot"

    def __init__(self, live: Host, results: dict[str, CommandResult], error: str = ""):
        super().__init__(live.backend.get_hostname())
        self.live = live
        self.results = results
        self.error = error  # why the batch did not run ('' when it did)
        self.misses: list[str] = []

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        key = self.quote(command, *args)
        found = self.results.get(key)
        if found is not None:
            return found
        self.misses.append(key)
        return self.live.run(command, *args, **kwargs)

    def get_pytest_id(self) -> str:
        return self.live.backend.get_pytest_id()

    def decode(self, data: bytes) -> str:
        return self.live.backend.decode(data)

    def encode(self, data: str) -> bytes:
        return self.live.backend.encode(data)


def take(live: Host, commands: list[str]) -> Host:
    """One node's snapshot: `commands` run in one round trip; a testinfra host answering from it."""
    commands = list(dict.fromkeys(commands))
    results: dict[str, CommandResult] = {}
    error = ""
    if commands:
        try:
            out = live.run(batch_script(commands))
            results = parse_batch(live, commands, out.stdout_bytes)
            if len(results) < len(commands):
                error = f"the batch answered {len(results)} of {len(commands)} reads (rc={out.rc}): {out.stderr[-500:]}"
        except (RuntimeError, OSError) as exc:  # ssh failed (rc 255): every read runs live, fails with ssh's error
            error = f"{type(exc).__name__}: {str(exc)[-500:]}"
    snap = Host(SnapshotBackend(live, results, error))
    snap.backend.set_host(snap)
    return snap


def take_all(nodes: dict[str, tuple[Host, list[str]]]) -> dict[str, Host]:
    """Every node's snapshot, all nodes at once: node name -> (live host, reads) in, name -> snapshot out."""
    if not nodes:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        futs = {name: pool.submit(take, live, reads) for name, (live, reads) in nodes.items()}
        return {name: f.result() for name, f in futs.items()}


def describe(snapshots: dict[str, Host]) -> list[str]:
    """Lines for the pytest log: what each snapshot served, what it missed, why a batch failed."""
    lines = []
    for name, snap in snapshots.items():
        b = snap.backend
        line = f"{name}: {len(b.results)} reads in one round trip, {len(b.misses)} run live"
        if b.misses:
            line += ": " + " | ".join(dict.fromkeys(b.misses))
        if b.error:
            line += f"; batch: {b.error}"
        lines.append(line)
    return lines
