"""The container lab, once per test session, for every integration test.

`container_lab` (session scope) writes a 3-node container lab (master, node, registry) with
`labctl init --provider docker` in a temporary directory, runs `labctl up`, yields a
`ContainerLab`, and ALWAYS runs `labctl down --yes` at the end, also when `up` or a test
failed. Other integration tests (provision, verify) reuse it:

    def test_something(container_lab):
        res = container_lab.run("provision")          # labctl provision --lab <its lab.yml>
        assert res.returncode == 0, res.stdout + res.stderr

Environment: LABCTL_IT_NAME (lab name, default `it-<random>`), LABCTL_IT_CIDR (node network,
default 192.168.57.0/24), LABCTL_IT_KEEP=1 keeps the lab after the session (for debugging).
Needs dockerd and vagrant (skipped, with that reason, only where the binaries are absent).
The fixture runs once per session: run tests/integration without pytest-xdist's -n.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT = 900  # includes building the node image on a fresh machine
DEFAULT_TIMEOUT = 1800


@dataclass(frozen=True)
class ContainerLab:
    dir: Path
    lab_file: Path
    name: str
    cidr: str

    def run(self, *labctl_args: str, timeout: float = DEFAULT_TIMEOUT,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `labctl ARGS --lab <lab.yml>` in the lab's directory (bounded by timeout)."""
        args = list(labctl_args)
        if args and "--lab" not in args and args[0] != "init":
            # right after the command name, so `ssh NODE -- CMD` keeps its remote command intact
            args[1:1] = ["--lab", str(self.lab_file)]
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        return subprocess.run([sys.executable, "-m", "labctl", *args], cwd=self.dir, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    @property
    def data(self) -> dict:
        return yaml.safe_load(self.lab_file.read_text())

    @property
    def nodes(self) -> list[dict]:
        return self.data["nodes"]

    @property
    def state_dir(self) -> Path:
        return self.dir / ".labctl" / self.name

    def container(self, node: str) -> str:
        return f"{self.name}-{node}"


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (the container lab needs docker and vagrant; CI installs them)")


@pytest.fixture(scope="session")
def container_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerLab]:
    _need("docker")
    _need("vagrant")
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") not in ("1", ""):
        pytest.fail("the container lab is one per session: run tests/integration without -n")
    name = os.environ.get("LABCTL_IT_NAME") or f"it-{secrets.token_hex(3)}"
    cidr = os.environ.get("LABCTL_IT_CIDR", "192.168.57.0/24")
    d = tmp_path_factory.mktemp("container-lab")
    lab = ContainerLab(d, d / "lab.yml", name, cidr)
    res = lab.run("init", "--provider", "docker", "--workers", "1", "--name", name, "--cidr", cidr,
                  "--lab", str(lab.lab_file), timeout=60)
    assert res.returncode == 0, res.stderr
    data = lab.data
    for n in data["nodes"]:  # the container lab does not enforce memory; keep the memory check honest
        n["memory_mb"] = 2048 if n["role"] == "control-plane" else 1024
    lab.lab_file.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        # the plain image: test_provision must exercise a first install (the prepared image has the packages)
        up = lab.run("up", "--node-image", "plain", timeout=UP_TIMEOUT)
        assert up.returncode == 0, f"labctl up failed (exit {up.returncode}):\n{up.stdout}\n{up.stderr}"
        yield lab
    finally:
        if os.environ.get("LABCTL_IT_KEEP") != "1":
            down = lab.run("down", "--yes", timeout=300)
            if down.returncode != 0:
                # last resort, by label, so nothing of this session is left behind
                ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=labctl.lab={name}"],
                                     capture_output=True, text=True, timeout=60).stdout.split()
                if ids:
                    subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, timeout=120)
                subprocess.run(["docker", "network", "rm", f"{name}-net"], capture_output=True, timeout=60)
