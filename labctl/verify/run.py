"""Run the testinfra suites of tests/infra against a lab and collect the results per layer.

One layer = one module tests/infra/test_<layer>.py. Before anything runs, cheap facts
decide which selected layers CAN run (nodes answer SSH; a kubeconfig exists and the
API server answers; flannel / addons are there); the others are skipped with the
reason, never run and never reported as passed. The layers that can run go to ONE
pytest subprocess (pytest-xdist, testinfra's ssh backend connecting as the inventory
says: labctl/machines/reach.py's targets and ControlPath, shared with Ansible and `labctl ssh`),
with labctl's plugin writing per-test JSON; this module turns that into a
report.Report. Returns data; never prints.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labctl.display.report import Check, LayerResult, Report, checks_from_json, checks_from_junit, layer_result
from labctl.errors import RunFailed, UserError
from labctl.machines import reach
from labctl.model.config import Lab
from labctl.provisioning.phases import LAYERS
from labctl.state import REPO_ROOT, StateDir

INFRA_DIR = REPO_ROOT / "tests" / "infra"
CLUSTER_LAYERS = ("control-plane", "network", "addons", "workloads")
NODE_LAYERS = ("host", "runtime", "registry", "storage")
PYTEST_TIMEOUT = 3600  # the whole run; every wait inside the suites is bounded on its own
# The pytest plugins the suites need, loaded by name: with autoloading on, pytest imports every
# plugin installed beside it (hypothesis alone took ~1 s of the 6 s a node-layer run took).
PYTEST_PLUGINS = ("xdist.plugin", "testinfra.plugin", "labctl.verify.plugin")


def module_for(layer: str, infra_dir: Path = INFRA_DIR) -> Path:
    """control-plane -> tests/infra/test_control_plane.py"""
    return infra_dir / f"test_{layer.replace('-', '_')}.py"


def parse_selection(value: str | None) -> tuple[list[str], bool]:
    """--layer a,b -> (layers in report order, explicit); no --layer -> every layer, not explicit."""
    if not value:
        return list(LAYERS), False
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in LAYERS]
    if bad or not chosen:
        raise UserError(f"--layer: unknown layer(s) {', '.join(bad) or repr(value)}; allowed: {', '.join(LAYERS)}")
    return [layer for layer in LAYERS if layer in chosen], True


# ---------------------------------------------------------------- cheap facts

@dataclass
class ClusterFacts:
    kubeconfig: bool = False
    server: str = ""
    answers: bool = False
    error: str = ""
    ready: bool | None = None  # /readyz said ok
    network: bool | None = None  # flannel's DaemonSet exists (None: could not tell)
    addons: bool | None = None  # something the addons phase installs exists (None: could not tell)


@dataclass
class Facts:
    hosts_file: bool = True
    ssh: dict[str, str] = field(default_factory=dict)  # node -> "" (answers) or the error
    groups: dict[str, list[str]] = field(default_factory=dict)  # inventory group -> hosts
    cluster: ClusterFacts = field(default_factory=ClusterFacts)

    @property
    def nodes_up(self) -> list[str]:
        return [n for n, err in self.ssh.items() if not err]


def _tcp(host: str, port: int, timeout: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


def probe_ssh(targets: dict[str, tuple[str, int]], timeout: float = 3.0) -> dict[str, str]:
    """node -> '' when its SSH port accepts a TCP connection, else the error (all in parallel)."""
    if not targets:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        futs = {name: pool.submit(_tcp, host, port, timeout) for name, (host, port) in targets.items()}
        return {name: f.result() for name, f in futs.items()}


def inventory_groups(hosts_file: Path) -> dict[str, list[str]]:
    """group -> nodes, from the generated hosts.yml."""
    doc = yaml.safe_load(hosts_file.read_text()) or {}
    children = (doc.get("all") or {}).get("children") or {}
    groups = {group: list((body or {}).get("hosts") or {}) for group, body in children.items()}
    groups["k8s_cluster"] = groups.get("control_plane", []) + groups.get("workers", [])
    return groups


class _Api:
    """Just enough of the Kubernetes API to decide what can run: GET with the kubeconfig's credentials."""

    def __init__(self, kubeconfig: Path, tmpdir: Path, timeout: float = 4.0):
        doc = yaml.safe_load(kubeconfig.read_text()) or {}
        ctx_name = doc.get("current-context")
        contexts = {c["name"]: c.get("context", {}) for c in doc.get("contexts") or []}
        ctx = contexts.get(ctx_name) or (next(iter(contexts.values())) if contexts else {})
        clusters = {c["name"]: c.get("cluster", {}) for c in doc.get("clusters") or []}
        users = {u["name"]: u.get("user", {}) for u in doc.get("users") or []}
        cluster = clusters.get(ctx.get("cluster")) or (next(iter(clusters.values())) if clusters else {})
        user = users.get(ctx.get("user")) or (next(iter(users.values())) if users else {})
        self.server = str(cluster.get("server", "")).rstrip("/")
        if not self.server:
            raise ValueError(f"{kubeconfig}: no cluster server")
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        self.ctx = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            self.ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            self.ctx.load_verify_locations(cafile=cluster["certificate-authority"])
        if cluster.get("insecure-skip-tls-verify"):
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE
        if user.get("client-certificate-data") and user.get("client-key-data"):
            tmpdir.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.TemporaryDirectory(dir=tmpdir) as d:
                cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
                for p, data in ((cert, user["client-certificate-data"]), (key, user["client-key-data"])):
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(base64.b64decode(data))
                self.ctx.load_cert_chain(str(cert), str(key))
        elif user.get("client-certificate") and user.get("client-key"):
            self.ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        elif user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"

    def get(self, path: str) -> tuple[int, str]:
        req = urllib.request.Request(self.server + path, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ctx) as resp:  # noqa: S310
                return resp.status, resp.read(1_000_000).decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(4000).decode(errors="replace")


def _items(api: _Api, path: str) -> int | None:
    code, body = api.get(path)
    if code != 200:
        return None
    try:
        return len(json.loads(body).get("items") or [])
    except ValueError:
        return None


def probe_cluster(state: StateDir, timeout: float = 4.0) -> ClusterFacts:
    """Does this lab have a cluster, does it answer, are flannel and the addons there?"""
    facts = ClusterFacts(kubeconfig=state.kubeconfig.exists())
    if not facts.kubeconfig:
        return facts
    try:
        api = _Api(state.kubeconfig, state.root / "tmp", timeout)
        facts.server = api.server
        code, body = api.get("/readyz")
    except (OSError, ValueError, ssl.SSLError, KeyError, TypeError, yaml.YAMLError) as exc:
        reason = getattr(exc, "reason", None) or exc
        facts.error = f"{facts.server or state.kubeconfig}: {reason}"
        return facts
    facts.answers = True
    facts.ready = code == 200 and body.strip() == "ok"
    if code in (401, 403):
        facts.error = f"{api.server}/readyz: HTTP {code} (the kubeconfig's credentials are refused)"
        return facts
    try:
        flannel = _items(api, "/apis/apps/v1/daemonsets?labelSelector=app%3Dflannel&limit=5")
        facts.network = None if flannel is None else flannel > 0
        found = [
            _items(api, "/apis/networking.k8s.io/v1/ingressclasses?limit=5"),
            _items(api, "/api/v1/secrets?labelSelector=owner%3Dhelm&limit=5"),
            _items(api, "/apis/apiregistration.k8s.io/v1/apiservices?fieldSelector="
                        + urllib.parse.quote("metadata.name=v1beta1.metrics.k8s.io")),
        ]
        known = [n for n in found if n is not None]
        facts.addons = None if not known else any(n > 0 for n in known)
    except (OSError, ssl.SSLError) as exc:
        facts.error = f"{api.server}: {getattr(exc, 'reason', exc)}"
    return facts


def gather_facts(lab: Lab, state: StateDir, layers: list[str]) -> Facts:
    if not state.hosts_file.exists():
        return Facts(hosts_file=False)
    # the address and port the suites connect to (they read them from the inventory reach wrote)
    targets = {name: (t.host, t.port) for name, t in reach.node_targets(lab, state).items()}
    facts = Facts(ssh=probe_ssh(targets), groups=inventory_groups(state.hosts_file))
    if any(layer in CLUSTER_LAYERS for layer in layers):
        facts.cluster = probe_cluster(state)
    return facts


# ---------------------------------------------------------------- the plan

@dataclass
class LayerPlan:
    layer: str
    run: bool
    reason: str = ""
    blocking: bool = False  # skipped because something that should work does not


def _addons_enabled(lab_vars: dict[str, Any]) -> bool:
    from labctl.model.facts import LabFacts

    return bool(LabFacts.from_group_vars(lab_vars).addons)


def _state_reason(layer: str, facts: Facts, lab_vars: dict[str, Any], state: StateDir) -> tuple[str, bool]:
    """Why the lab's state does not allow this layer to run ('' if it does), and whether that is a failure."""
    c = facts.cluster
    if not facts.hosts_file:
        return f"no inventory ({state.hosts_file} missing): run labctl up", True
    if layer in NODE_LAYERS:
        group = {"registry": "registry", "storage": "registry"}.get(layer)
        if group and not facts.groups.get(group):
            what = "the registry" if layer == "registry" else "the NFS export"
            return f"no registry node in lab.yml ({what} lives on it)", False
        wanted = facts.groups.get(group, []) if group else list(facts.ssh)
        if wanted and all(facts.ssh.get(n) for n in wanted):
            errs = "; ".join(facts.ssh.get(n, "") for n in wanted)
            return f"no node answers SSH ({errs}): is the lab up? labctl status", True
        return "", False
    if not c.kubeconfig:
        return f"no cluster (provision stopped before kubeadm: no .labctl/{state.lab_name}/kubeconfig)", False
    if not c.answers or (c.error and c.network is None):
        return f"the cluster does not answer: {c.error or c.server}", True
    if layer in ("network", "workloads") and c.network is False:
        return "no pod network (flannel not installed: provision stopped before network)", False
    if layer == "addons":
        if not _addons_enabled(lab_vars):
            return "no addons in lab.yml", False
        if c.addons is False:
            return "no addons installed (provision stopped before addons)", False
    return "", False


def plan_layers(layers: list[str], facts: Facts, lab_vars: dict[str, Any], state: StateDir,
                infra_dir: Path = INFRA_DIR) -> list[LayerPlan]:
    """Decide, per selected layer, whether it runs or why it is skipped. Pure: facts in, plan out."""
    out: list[LayerPlan] = []
    for layer in layers:
        reason, blocking = _state_reason(layer, facts, lab_vars, state)
        mod = module_for(layer, infra_dir)
        if not reason and not mod.exists():
            reason = f"no checks written for this layer yet ({mod.name} missing)"
        out.append(LayerPlan(layer, not reason, reason, blocking))
    return out


# ---------------------------------------------------------------- the run

def resolve_workers(workers: str) -> str:
    """'auto' -> half the cores, at most 4; serial ('0') below 2 workers.

    Measured (bench/verify.py): each xdist worker pays its own start (imports) and takes its
    own node snapshots (tests/infra/_snapshot.py), while the node layers' reads are one
    batched ssh round trip per node and the rest is the registry's ordered round trip; on
    the 2-core build machine serial beat -n 2 (1.5x slower with xdist; 1.9 s vs 2.8 s for
    host,runtime,registry). Parallel workers pay off only with spare cores.
    """
    if workers != "auto":
        return workers
    n = min(4, (os.cpu_count() or 1) // 2)
    return str(n) if n >= 2 else "0"


def pytest_argv(modules: list[Path], hosts_file: Path, junit: Path, workers: str) -> list[str]:
    argv = [sys.executable, "-m", "pytest", *[str(m) for m in modules],
            # only the plugins the suites use (pytest_env turns entry-point autoloading off)
            *[arg for plugin in PYTEST_PLUGINS for arg in ("-p", plugin)], "-p", "no:cacheprovider",
            f"--ansible-inventory={hosts_file}", f"--junitxml={junit}",
            "-o", "junit_family=xunit1", "-o", "junit_suite_name=labctl-verify",
            "-q", "-rfEs", "--color=no", "--tb=short"]
    if workers not in ("0", "1"):
        argv += ["-n", workers, "--dist", "loadgroup"]
    # serial: xdist stays loaded (it registers the xdist_group mark the suites use) and runs nothing
    return argv


def pytest_env(state: StateDir, results: Path, slow: bool, lab_vars: dict[str, Any] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if (lab_vars or {}).get("ansible_user") == "root":
        # testinfra wraps every command in `sudo /bin/sh -c` when ansible_become is set; as root that
        # is a wasted process per check. An empty ANSIBLE_BECOME overrides the inventory (testinfra
        # reads the environment last) and is false for Ansible too.
        env["ANSIBLE_BECOME"] = ""
    env.update({
        "LABCTL_INVENTORY": str(state.hosts_file),
        "LABCTL_STATE_DIR": str(state.root),
        "LABCTL_VERIFY_RESULTS": str(results),
        "LABCTL_VERIFY_SLOW": "1" if slow else "",
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_VERBOSITY": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # PYTEST_PLUGINS are named on the command line
    })
    return env


def load_lab_vars(state: StateDir) -> dict[str, Any]:
    gv = state.inventory_dir / "group_vars" / "all.yml"
    return (yaml.safe_load(gv.read_text()) or {}) if gv.exists() else {}


def attach_hints(layers: list[LayerResult], lab_vars: dict[str, Any]) -> None:
    from labctl.display.hints import hint_for

    for lr in layers:
        for c in lr.failures:
            c.hint = c.hint or hint_for(c, lab_vars)


def verify(lab_file: Path, lab: Lab, selection: str | None = None, workers: str = "auto",
           junit_out: Path | None = None, slow: bool = False, facts: Facts | None = None,
           infra_dir: Path = INFRA_DIR, on_plan: Callable[[list[LayerPlan], str], None] | None = None) -> Report:
    """Plan, run what can run, and return the report (junit_out: keep pytest's JUnit XML there)."""
    t0 = time.time()
    layers, explicit = parse_selection(selection)
    workers = resolve_workers(workers)
    state = StateDir(lab_file, lab.name)
    state.ensure()
    lab_vars = load_lab_vars(state)
    facts = facts or gather_facts(lab, state, layers)
    plan = plan_layers(layers, facts, lab_vars, state, infra_dir)
    runnable = [p.layer for p in plan if p.run]
    if on_plan is not None:
        on_plan(plan, workers)
    checks: list[Check] = []
    log_path = ""
    pytest_rc: int | None = None
    if runnable:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log = state.logs_dir / f"verify-{stamp}.log"
        log_path = str(log)
        (state.root / "tmp").mkdir(mode=0o700, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="verify-", dir=state.root / "tmp"))
        results, junit = work / "results.json", work / "junit.xml"
        argv = pytest_argv([module_for(layer, infra_dir) for layer in runnable], state.hosts_file, junit, workers)
        with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write("$ " + " ".join(argv) + "\n")
            fh.flush()
            try:
                proc = subprocess.run(argv, cwd=REPO_ROOT, env=pytest_env(state, results, slow, lab_vars), stdout=fh,
                                      stderr=subprocess.STDOUT, timeout=PYTEST_TIMEOUT, check=False)
                pytest_rc = proc.returncode
            except subprocess.TimeoutExpired:
                raise RunFailed(f"the checks did not finish within {PYTEST_TIMEOUT}s; see {log}") from None
        if results.exists():
            checks = checks_from_json(results)
        elif junit.exists():
            checks = checks_from_junit(junit)
        elif pytest_rc not in (0, 5):
            tail = "\n".join(log.read_text().splitlines()[-25:])
            raise RunFailed(f"pytest exited {pytest_rc} without results; the end of {log}:\n{tail}")
        if junit_out is not None and junit.exists():
            junit_out.parent.mkdir(parents=True, exist_ok=True)
            junit_out.write_bytes(junit.read_bytes())
        shutil.rmtree(work, ignore_errors=True)
    results_by_layer: list[LayerResult] = []
    for p in plan:
        if p.run:
            results_by_layer.append(layer_result(p.layer, checks))
        else:
            results_by_layer.append(LayerResult(p.layer, "skipped", reason=p.reason, blocking=p.blocking))
    stray = [c for c in checks if c.layer not in runnable]
    if stray:  # e.g. a collection error outside the selected modules
        results_by_layer.append(LayerResult("other", "failed", checks=stray))
    attach_hints(results_by_layer, lab_vars)
    if junit_out is not None and not runnable:
        junit_out.parent.mkdir(parents=True, exist_ok=True)
        junit_out.write_text(skipped_junit(results_by_layer))
    how = (f"pytest-xdist -n {workers}" if workers != "0" else "serial") if runnable else "nothing ran"
    report = Report(lab=lab.name, layers=results_by_layer, explicit=explicit, started=t0,
                    duration=time.time() - t0, workers=how,
                    log=log_path)
    return report


def skipped_junit(layers: list[LayerResult]) -> str:
    """A JUnit file for a run where no layer could run: one skipped case per layer, so CI shows why."""
    import xml.sax.saxutils as su

    cases = "".join(
        f'<testcase classname="labctl.verify" name="{su.escape(lr.layer)}" time="0">'
        f'<skipped message={su.quoteattr(lr.reason)}/></testcase>' for lr in layers)
    return (f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="labctl-verify" errors="0" '
            f'failures="0" skipped="{len(layers)}" tests="{len(layers)}">{cases}</testsuite></testsuites>\n')
