"""tests/infra/_snapshot.py: a node's reads in one round trip, answering exactly as live commands do.

The batch runs here for real on `local://` (the same script the ssh backend sends to a node)
and every answer is compared with the same command run live. The read helpers are held to the
commands testinfra's own modules issue, recorded from testinfra itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import testinfra
from testinfra.backend.base import BaseBackend, CommandResult

INFRA = Path(__file__).resolve().parents[1] / "infra"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"infra_{name}", INFRA / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


snapshot = _load("_snapshot")
check_mod = _load("_check")

COMMANDS = [
    "echo hello",
    "printf 'no newline'",
    "echo out; echo err >&2; exit 3",
    "cat -- /nonexistent/labctl-file",
    "printf 'caf\\303\\251 \\000 bytes'",  # non-ASCII and a NUL byte
    "echo with a comment # ) } done",
    "read line; echo \"stdin gave: $line\"",  # stdin is empty, as for a live command
    "true",
    "seq 1 20000",  # ~110 kB
]


@pytest.fixture
def local():
    return testinfra.get_host("local://")


def test_batch_answers_as_live_commands(local) -> None:
    snap = snapshot.take(local, COMMANDS)
    assert snap.backend.error == ""
    for command in COMMANDS:
        got, live = snap.run(command), local.run(command)
        assert (got.rc, got.stdout_bytes, got.stderr_bytes) == (live.rc, live.stdout_bytes, live.stderr_bytes), command
        assert got.command == command.encode()
    assert snap.backend.misses == []


def test_a_read_not_prefetched_runs_live_and_is_listed(local) -> None:
    snap = snapshot.take(local, ["echo one"])
    assert snap.run("echo %s", "two").stdout == "two\n"
    assert snap.backend.misses == ["echo two"]
    (line,) = snapshot.describe({"n1": snap})
    assert line == "n1: 1 reads in one round trip, 1 run live: echo two"


def test_testinfra_modules_read_from_the_batch(local, tmp_path: Path) -> None:
    f = tmp_path / "a file"
    f.write_text("content\n")
    f.chmod(0o640)
    reads = snapshot.file_reads(str(f), "exists", "is_directory", "content", "mode", "user")
    reads += snapshot.file_reads(str(tmp_path / "missing"), "exists")
    snap = snapshot.take(local, reads)
    sf, lf = snap.file(str(f)), local.file(str(f))
    assert (sf.exists, sf.is_directory, sf.content_string, sf.mode, sf.user) == \
        (lf.exists, lf.is_directory, lf.content_string, lf.mode, lf.user) == (True, False, "content\n", 0o640, lf.user)
    assert snap.file(str(tmp_path / "missing")).exists is False
    assert snap.system_info.type == local.system_info.type == "linux"
    assert snap.backend.misses == []


def test_batch_that_cannot_run_answers_live(local) -> None:
    class Broken(BaseBackend):
        """ssh fails for the batch (rc 255, as testinfra's ssh backend raises it); single commands work."""

        NAME = "broken"

        def run(self, command: str, *args: str, **kwargs) -> CommandResult:
            cmd = self.quote(command, *args)
            if "mktemp" in cmd:
                raise RuntimeError("ssh: connect to host 192.0.2.9 port 22: No route to host")
            return local.run(cmd)

    live = testinfra.host.Host(Broken("n1"))
    snap = snapshot.take(live, ["echo a"])
    assert "No route to host" in snap.backend.error
    assert snap.run("echo a").stdout == "a\n" and snap.backend.misses == ["echo a"]
    assert "batch: RuntimeError: ssh: connect to host" in snapshot.describe({"n1": snap})[0]


# ---------------------------------------------------------------- the helpers spell testinfra's commands

class Recorder(BaseBackend):
    """Answers like a systemd Debian node and records every command testinfra's modules issue."""

    NAME = "recorder"

    def __init__(self, answers: dict[str, tuple[int, str]]):
        super().__init__("n1")
        self.answers = answers
        self.seen: list[str] = []

    def run(self, command: str, *args: str, **kwargs) -> CommandResult:
        cmd = self.quote(command, *args)
        self.seen.append(cmd)
        rc, out = self.answers.get(cmd, (0, ""))
        return self.result(rc, self.encode(cmd), out.encode(), b"")


def _recorder(answers: dict[str, tuple[int, str]] | None = None) -> tuple[Recorder, testinfra.host.Host]:
    base = {"uname -s": (0, "Linux\n"), "uname -m": (0, "x86_64\n"),
            "cat /etc/os-release": (0, 'ID=debian\nVERSION_ID="12"\n')}
    rec = Recorder({**base, **(answers or {})})
    host = testinfra.host.Host(rec)
    rec.set_host(host)
    return rec, host


def test_file_reads_are_testinfras_commands() -> None:
    path = "/etc/containerd/certs.d/registry:5000/it's here"
    rec, host = _recorder({snapshot.q("stat -Lc %%a %s", path): (0, "600\n")})
    f = host.file(path)
    assert (f.exists, f.is_directory, f.content_string, f.mode, f.user) == (True, True, "", 0o600, "")
    assert rec.seen and set(rec.seen) <= set(snapshot.file_reads(path, "exists", "is_directory", "content", "mode",
                                                                 "user"))


@pytest.mark.parametrize("enabled", [(0, "enabled\n"), (1, "disabled\n"), (1, "")])  # "": testinfra asks SysV
def test_service_reads_are_testinfras_commands(enabled: tuple[int, str]) -> None:
    rec, host = _recorder({"systemctl is-enabled ufw": enabled, "systemctl is-active ufw": (3, "inactive\n")})
    svc = host.service("ufw")
    assert (svc.is_running, svc.is_enabled) == (False, enabled[0] == 0)
    assert rec.seen and set(rec.seen) <= set(snapshot.service_reads("ufw")), rec.seen


def test_command_v_is_testinfras_command() -> None:
    rec, host = _recorder()
    host.exists("crictl")
    assert rec.seen and set(rec.seen) <= set(snapshot.command_v("crictl"))


# ---------------------------------------------------------------- evidence only on failure

def test_check_gathers_evidence_only_when_it_fails() -> None:
    def boom() -> str:
        raise AssertionError("evidence was gathered for a passing check")

    check_mod.check(True, "x", expected=1, found=boom, detail=boom)
    check_mod.expect(1, 1, "x", detail=boom)
    with pytest.raises(check_mod.CheckFailed) as err:
        check_mod.check(False, "containerd runs", expected="active", found=lambda: ["inactive"],
                        detail=lambda: "journal line")
    assert (err.value.found, err.value.detail) == ("['inactive']", "journal line")
    with pytest.raises(check_mod.CheckFailed) as err:
        check_mod.expect("a", "b", "same", detail=lambda: "why")
    assert str(err.value) == "same\nexpected: b\nfound: a\ndetail:\nwhy"


# ---------------------------------------------------------------- the suites' read lists

def _lab_variant(change: str) -> dict:
    from tests.unit.conftest import base_lab

    d = base_lab()
    if change == "firewall ports, ipvs":
        d["host"]["firewall"] = "ports"
        d["kubernetes"]["proxy_mode"] = "ipvs"
    elif change == "no registry":
        d["nodes"] = d["nodes"][:2]
        d["kubernetes"]["mirror_images"] = False
    return d


@pytest.mark.parametrize("change", ["course lab", "firewall ports, ipvs", "no registry"])
def test_every_suite_lists_its_reads_for_every_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     change: str) -> None:
    from labctl.model.config import parse_lab
    from labctl.provisioning.inventory import write_inventory
    from tests.unit.conftest import write_lab

    data = _lab_variant(change)
    lab_file = write_lab(tmp_path, data)
    monkeypatch.setenv("LABCTL_INVENTORY", str(write_inventory(parse_lab(data, str(lab_file)), lab_file)))
    monkeypatch.syspath_prepend(str(INFRA))
    for name in ("test_host", "test_runtime", "test_registry"):
        suite = _load(name)
        for node in suite.GV["lab_nodes"]:
            reads = suite.snapshot_reads(node)
            assert reads and all(isinstance(r, str) and r for r in reads), (name, node["name"])
            if change == "firewall ports, ipvs" and name == "test_host":
                assert "firewall-cmd --zone=public --list-ports" in reads
                assert "test -e /sys/module/ip_vs" in reads
