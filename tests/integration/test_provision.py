"""`labctl provision` on the real 3-node container lab: converge, converge again with nothing changed,
no secret anywhere but secrets/, and a node killed in the middle of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labctl.provisioning.provision import Redactor
from labctl.state import StateDir
from tests.integration.conftest import REPO, ContainerLab

pytestmark = pytest.mark.integration

UNTIL = "registry"
PROVISION_TIMEOUT = 1800


def provision(lab: ContainerLab, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    res = lab.run("provision", "--until", UNTIL, "--no-progress", "--json", *extra, timeout=PROVISION_TIMEOUT)
    try:
        result = json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"provision printed no JSON result (exit {res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}")
    return res, result


def explain(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\n{res.stderr[-6000:]}"


@pytest.fixture(scope="module")
def first(container_lab: ContainerLab) -> tuple[subprocess.CompletedProcess[str], dict]:
    return provision(container_lab)


@pytest.fixture(scope="module")
def second(container_lab: ContainerLab, first) -> tuple[subprocess.CompletedProcess[str], dict]:
    assert first[0].returncode == 0, "the first provision failed; see test_provision_until_registry"
    return provision(container_lab)


def test_provision_until_registry(container_lab: ContainerLab, first) -> None:
    res, result = first
    assert res.returncode == 0, explain(res)
    assert result["ok"] and result["phases"] == ["host", "runtime", "registry"]
    names = sorted(n["name"] for n in container_lab.nodes)
    assert sorted(result["recap"]) == names
    for host, r in result["recap"].items():
        assert r["failed"] == 0 and r["unreachable"] == 0, (host, r)
        assert r["ok"] > 0, (host, r)
    log = Path(result["log_path"])
    assert log.parent == container_lab.state_dir / "logs"
    assert log.stat().st_mode & 0o777 == 0o600
    assert f"event log: {log}" in res.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[-1]["event"] == "playbook_on_stats"
    rows = Path(result["tasks_path"]).read_text().splitlines()
    assert len(rows) - 1 == result["task_hosts"]


def test_second_run_changes_nothing(second) -> None:
    res, result = second
    assert res.returncode == 0, explain(res)
    changed = {host: r["changed"] for host, r in result["recap"].items()}
    assert changed == dict.fromkeys(changed, 0), (
        "not idempotent; changed tasks:\n" + "\n".join(
            line for line in Path(result["tasks_path"]).read_text().splitlines()[1:] if line.split("\t")[5] == "1"))
    assert result["changed_total"] == 0


def test_no_secret_outside_secrets_dir(container_lab: ContainerLab, first, second) -> None:
    state = container_lab.state_dir
    secret_files = sorted(p for p in (state / "secrets").iterdir() if p.is_file())
    assert {"registry-password", "grafana-admin-password"} <= {p.name for p in secret_files}
    for p in secret_files:
        assert p.stat().st_mode & 0o777 == 0o600, p
    needles = Redactor.for_state(StateDir(container_lab.lab_file, container_lab.name)).needles
    assert needles
    inventory = container_lab.dir / "inventory" / container_lab.name
    files = [p for p in [*state.rglob("*"), *inventory.rglob("*")]
             if p.is_file() and not p.is_socket() and "secrets" not in p.relative_to(container_lab.dir).parts]
    assert any(p.suffix == ".jsonl" for p in files)
    leaks = []
    for p in files:
        text = p.read_text(errors="replace")
        leaks += [f"{p}: {n[:4]}..." for n in needles if n in text]
    for res in (first[0], second[0]):
        leaks += [f"terminal: {n[:4]}..." for n in needles if n in res.stdout + res.stderr]
    assert leaks == []


def _node_sh(lab: ContainerLab, node: str, script: str) -> str:
    res = subprocess.run(["docker", "exec", lab.container(node), "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    return res.stdout.strip()


def _changed_tasks(result: dict, host: str) -> set[str]:
    rows = Path(result["tasks_path"]).read_text().splitlines()[1:]
    return {r.split("\t")[2] for r in rows if r.split("\t")[3] == host and r.split("\t")[5] == "1"}


def test_drift_is_shown_by_check_then_repaired(container_lab: ContainerLab, second) -> None:
    """The roles skip what their one state read finds right: a node that drifted must still be
    seen (--check, changing nothing) and repaired (a real run), then left alone."""
    worker = next(n["name"] for n in container_lab.nodes if n["role"] == "worker")
    _node_sh(container_lab, worker, "systemctl stop containerd && systemctl disable containerd 2>/dev/null;"
             " systemctl unmask swap.target; echo '# drift' >> /etc/containerd/config.toml;"
             " chmod 0600 /etc/crictl.yaml")
    drifted = {
        "containerd : Run containerd now and at boot",
        "swap : Mask swap.target",
        "containerd : Write containerd's configuration and trust the lab CA for the registry",
    }

    res, checked = provision(container_lab, "--check")
    assert res.returncode == 0, explain(res)
    assert drifted <= _changed_tasks(checked, worker), _changed_tasks(checked, worker)
    assert _node_sh(container_lab, worker, "systemctl is-active containerd; systemctl is-enabled swap.target;"
                    " tail -n 1 /etc/containerd/config.toml; stat -c %a /etc/crictl.yaml").split("\n") == \
        ["inactive", "static", "# drift", "600"], "--check changed the node"
    others = {h: r["changed"] for h, r in checked["recap"].items() if h != worker}
    assert others == dict.fromkeys(others, 0)

    res, repaired = provision(container_lab)
    assert res.returncode == 0, explain(res)
    assert drifted <= _changed_tasks(repaired, worker)
    assert _node_sh(container_lab, worker, "systemctl is-active containerd; systemctl is-enabled containerd;"
                    " systemctl is-enabled swap.target; grep -c '# drift' /etc/containerd/config.toml;"
                    " stat -c %a /etc/crictl.yaml").split("\n") == ["active", "enabled", "masked", "0", "644"]

    res, again = provision(container_lab)
    assert res.returncode == 0, explain(res)
    assert again["changed_total"] == 0, _changed_tasks(again, worker)


def _results_for(log: Path, host: str) -> int:
    n = 0
    for line in log.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # the line being written
        if ev.get("event", "").startswith("runner_on_") and ev.get("event_data", {}).get("host") == host \
                and ev["event"] != "runner_on_start":
            n += 1
    return n


def test_node_killed_mid_run_is_reported_unreachable_then_up_and_provision_converge(
        container_lab: ContainerLab, second) -> None:
    worker = next(n["name"] for n in container_lab.nodes if n["role"] == "worker")
    logs = container_lab.state_dir / "logs"
    before = set(logs.glob("provision-*.jsonl"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "provision", "--lab", str(container_lab.lab_file),
                             "--until", UNTIL, "--no-progress", "--json"], cwd=container_lab.dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        killed = False
        while time.monotonic() < deadline and proc.poll() is None:
            new = sorted(set(logs.glob("provision-*.jsonl")) - before)
            if new and _results_for(new[-1], worker) >= 5:
                kill = subprocess.run(["docker", "kill", container_lab.container(worker)],
                                      capture_output=True, text=True, timeout=60)
                assert kill.returncode == 0, kill.stderr
                killed = True
                break
            time.sleep(0.3)
        assert killed, "the run ended (or never got 5 tasks into the worker) before the node could be killed"
        out, err = proc.communicate(timeout=PROVISION_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-4000:]
    result = json.loads(out)
    assert result["recap"][worker]["unreachable"] >= 1, result["recap"]
    failure = next(f for f in result["failures"] if f["host"] == worker)
    assert failure["kind"] == "unreachable"
    assert f"{worker}: UNREACHABLE in " in err
    assert "labctl up" in err  # the hint
    others = [h for h in result["recap"] if h != worker]
    assert all(result["recap"][h]["unreachable"] == 0 for h in others)

    up = container_lab.run("up", timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr
    res, again = provision(container_lab)
    assert res.returncode == 0, explain(res)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in again["recap"].values()), again["recap"]


def test_kubeadm_phases_stop_before_kubeadm_where_no_kubelet_can_run(container_lab: ContainerLab, second) -> None:
    """On an engine that refuses --privileged, the cluster phases stop before kubeadm with the reason."""
    inspect = subprocess.run(["docker", "inspect", "--format", "{{.HostConfig.Privileged}}",
                              container_lab.container("master")], capture_output=True, text=True, timeout=30)
    if inspect.stdout.strip() == "true":
        pytest.skip("this Docker engine runs privileged nodes: a kubelet can run here, the guard does not apply")
    res = container_lab.run("provision", "--phase", "control-plane,join", "--no-progress", timeout=120)
    assert res.returncode == 1, explain(res)
    assert "stopped before kubeadm" in res.stderr and "cannot run a kubelet" in res.stderr, res.stderr
    assert "docs/vm-lab.md" in res.stderr
    left = subprocess.run(["docker", "exec", container_lab.container("master"), "ls", "/etc/kubernetes"],
                          capture_output=True, text=True, timeout=30)
    assert "admin.conf" not in left.stdout and "manifests" not in left.stdout, left.stdout
