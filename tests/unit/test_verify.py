"""labctl verify: layer selection, the skip decisions, the exit code rule, and a real pytest run.

The end-to-end case runs the real driver (a pytest subprocess with labctl's plugin,
pytest-xdist, JUnit) on a small suite against `local://`, so the parsing of real
results is tested without a lab; the container lab run is tests/integration/test_verify.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from labctl.display.report import LayerResult, Report, checks_from_junit
from labctl.errors import UserError
from labctl.provisioning.phases import LAYERS
from labctl.state import StateDir
from labctl.verify.run import ClusterFacts, Facts, parse_selection, plan_layers, probe_cluster, pytest_argv, pytest_env, verify
from tests.unit.conftest import base_lab, run_labctl, write_lab


def test_layers_in_report_order():
    assert list(LAYERS) == ["host", "runtime", "registry", "storage", "control-plane", "network", "addons", "workloads"]


@pytest.mark.parametrize("value, layers, explicit", [
    (None, list(LAYERS), False),
    ("", list(LAYERS), False),
    ("registry,host", ["host", "registry"], True),
    (" workloads , control-plane ", ["control-plane", "workloads"], True),
])
def test_parse_selection(value, layers, explicit):
    assert parse_selection(value) == (layers, explicit)


@pytest.mark.parametrize("value", ["hosts", "host,kernel", ","])
def test_parse_selection_refuses_unknown(value):
    with pytest.raises(UserError, match="allowed: host, runtime, registry"):
        parse_selection(value)


@pytest.fixture
def suites(tmp_path: Path) -> Path:
    d = tmp_path / "infra"
    d.mkdir()
    for layer in LAYERS:
        (d / f"test_{layer.replace('-', '_')}.py").write_text("")
    return d


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return StateDir(tmp_path / "lab.yml", "k8s-lab")


LAB_VARS = {"lab_addons": {"ingress": "traefik", "metrics_server": True, "dashboard": "none", "monitoring": "none"},
            "lab_addons_enabled": {"metrics_server": "metrics-server", "ingress": "traefik"}}
UP = {"master": "", "node": "", "registry": ""}
GROUPS = {"control_plane": ["master"], "workers": ["node"], "registry": ["registry"], "k8s_cluster": ["master", "node"]}


def _plan(facts, state, suites, lab_vars=LAB_VARS, layers=None):
    return {p.layer: p for p in plan_layers(layers or list(LAYERS), facts, lab_vars, state, suites)}


def test_no_cluster_skips_cluster_layers_with_the_reason(state, suites):
    plan = _plan(Facts(ssh=UP, groups=GROUPS, cluster=ClusterFacts(kubeconfig=False)), state, suites)
    assert [p.layer for p in plan.values() if p.run] == ["host", "runtime", "registry", "storage"]
    for layer in ("control-plane", "network", "addons", "workloads"):
        assert not plan[layer].run and not plan[layer].blocking
        assert plan[layer].reason.startswith("no cluster (provision stopped before kubeadm")


def test_silent_apiserver_is_a_blocking_skip(state, suites):
    facts = Facts(ssh=UP, groups=GROUPS, cluster=ClusterFacts(kubeconfig=True, server="https://192.0.2.1:6443",
                                                              error="https://192.0.2.1:6443: [Errno 111] refused"))
    plan = _plan(facts, state, suites)
    assert all(not plan[la].run and plan[la].blocking for la in ("control-plane", "workloads"))
    assert "does not answer" in plan["control-plane"].reason and "refused" in plan["control-plane"].reason


def test_cluster_without_flannel_skips_network_and_workloads(state, suites):
    facts = Facts(ssh=UP, groups=GROUPS, cluster=ClusterFacts(kubeconfig=True, answers=True, ready=True,
                                                              network=False, addons=False))
    plan = _plan(facts, state, suites)
    assert plan["control-plane"].run
    assert not plan["network"].run and "flannel not installed" in plan["network"].reason
    assert not plan["workloads"].run
    assert not plan["addons"].run and "provision stopped before addons" in plan["addons"].reason


def test_full_cluster_runs_everything(state, suites):
    facts = Facts(ssh=UP, groups=GROUPS, cluster=ClusterFacts(kubeconfig=True, answers=True, ready=True,
                                                              network=True, addons=True))
    assert all(p.run for p in _plan(facts, state, suites).values())


def test_no_addons_in_lab_yml(state, suites):
    facts = Facts(ssh=UP, groups=GROUPS, cluster=ClusterFacts(kubeconfig=True, answers=True, network=True, addons=True))
    none = {"lab_addons": {"ingress": "none", "metrics_server": False, "dashboard": "none", "monitoring": "none"},
            "lab_addons_enabled": {}}
    plan = _plan(facts, state, suites, lab_vars=none)
    assert not plan["addons"].run and plan["addons"].reason == "no addons in lab.yml"


def test_lab_down_is_a_blocking_skip(state, suites):
    down = {n: f"{n}:22: Connection refused" for n in UP}
    plan = _plan(Facts(ssh=down, groups=GROUPS), state, suites, layers=["host", "registry"])
    assert not plan["host"].run and plan["host"].blocking and "no node answers SSH" in plan["host"].reason


def test_no_registry_node_skips_registry_and_storage(state, suites):
    groups = {**GROUPS, "registry": []}
    plan = _plan(Facts(ssh=UP, groups=groups), state, suites, layers=["registry", "storage"])
    assert not plan["registry"].run and not plan["registry"].blocking
    assert "no registry node in lab.yml" in plan["storage"].reason


def test_missing_suite_module_is_said(state, tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    plan = _plan(Facts(ssh=UP, groups=GROUPS), state, empty, layers=["host"])
    assert plan["host"].reason == "no checks written for this layer yet (test_host.py missing)"


def test_probe_cluster_without_kubeconfig(state):
    assert probe_cluster(state) == ClusterFacts(kubeconfig=False)


def test_probe_cluster_with_nothing_listening(state, tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state.ensure()
    state.kubeconfig.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}))
    facts = probe_cluster(state, timeout=2)
    assert facts.kubeconfig and not facts.answers
    assert f"127.0.0.1:{port}" in facts.error and "refused" in facts.error.lower()


def test_pytest_argv_uses_the_inventory_plugin_and_xdist(tmp_path):
    argv = pytest_argv([tmp_path / "test_host.py"], tmp_path / "hosts.yml", tmp_path / "j.xml", "auto")
    assert argv[1:3] == ["-m", "pytest"]
    assert f"--ansible-inventory={tmp_path / 'hosts.yml'}" in argv and "labctl.verify.plugin" in argv
    assert argv[argv.index("-n") + 1] == "auto" and "loadgroup" in argv and "no:cacheprovider" in argv
    assert "--force-ansible" not in argv
    # entry-point autoloading is off (pytest_env): the plugins the suites use are named
    assert {"xdist.plugin", "testinfra.plugin"} <= {argv[i + 1] for i, a in enumerate(argv) if a == "-p"}
    assert pytest_env(StateDir(tmp_path / "lab.yml", "k8s-lab"), tmp_path / "r.json", False)[
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
    serial = pytest_argv([tmp_path / "test_host.py"], tmp_path / "hosts.yml", tmp_path / "j.xml", "0")
    assert "-n" not in serial and "no:xdist" not in serial  # xdist registers the xdist_group mark


@pytest.mark.parametrize("layers, explicit, code", [
    ([("host", "passed", False), ("control-plane", "skipped", False)], False, 0),   # default: the lab has no cluster yet
    ([("host", "passed", False), ("control-plane", "skipped", False)], True, 1),    # --layer: a skip is not a pass
    ([("host", "passed", False), ("control-plane", "skipped", True)], False, 1),    # cluster silent: counts as failure
    ([("host", "failed", False)], False, 1),
    ([("host", "skipped", False)], False, 1),                                       # nothing passed: not a green run
    ([("host", "passed", False), ("registry", "passed", False)], True, 0),
])
def test_exit_code_rule(layers, explicit, code):
    report = Report("lab", [LayerResult(n, s, blocking=b) for n, s, b in layers], explicit=explicit)
    assert report.exit_code == code


SUITE_HOST = '''
import pytest
from _check import check, expect

testinfra_hosts = ["local://"]


@pytest.mark.parametrize("path", ["/", "/tmp"])
def test_dir_exists(host, path):
    expect(host.file(path).is_directory, True, f"{path} is a directory")


def test_swap_is_off(host):
    expect("/swapfile 1G", "", "swap is off")


def test_plain_assert(host):
    assert host.run("echo 3").stdout.strip() == "4"


def test_not_here(host):
    pytest.skip("only on EL")
'''

SUITE_RUNTIME = '''
import pytest

testinfra_hosts = ["local://"]
pytestmark = pytest.mark.xdist_group("runtime")


@pytest.mark.parametrize("node, port", [("node-1", 22)])
def test_by_node_name(node, port):
    from _check import check
    check(False, "port open", expected=port, found="closed")


@pytest.fixture
def broken():
    raise RuntimeError("ssh: connect to host 192.0.2.9 port 22: No route to host")


def test_containerd(host, broken):
    pass


def test_runtime_ok(host):
    assert host.run("true").rc == 0
'''


@pytest.mark.parametrize("workers", ["0", "2"])
def test_real_run_report(tmp_path, workers):
    """The real driver on a local suite: results per layer, expected/found, hints, skips, JUnit."""
    from labctl.model.config import parse_lab
    from labctl.provisioning.inventory import write_inventory

    lab_file = write_lab(tmp_path, base_lab())
    lab = parse_lab(base_lab())
    write_inventory(lab, lab_file)
    suite = tmp_path / "infra"
    suite.mkdir()
    (suite / "test_host.py").write_text(textwrap.dedent(SUITE_HOST))
    (suite / "test_runtime.py").write_text(textwrap.dedent(SUITE_RUNTIME))
    repo_infra = Path(__file__).resolve().parents[1] / "infra"
    (suite / "_check.py").write_text((repo_infra / "_check.py").read_text())
    junit = tmp_path / "out" / "junit.xml"
    facts = Facts(ssh=UP, groups=GROUPS, cluster=ClusterFacts(kubeconfig=False))
    report = verify(lab_file, lab, "host,runtime,control-plane", workers, junit_out=junit, facts=facts,
                    infra_dir=suite)
    by = {lr.layer: lr for lr in report.layers}
    assert [lr.layer for lr in report.layers] == ["host", "runtime", "control-plane"]
    host, runtime, cp = by["host"], by["runtime"], by["control-plane"]
    assert (host.status, host.count("passed"), host.count("failed"), host.count("skipped")) == ("failed", 2, 2, 1)
    swap = next(c for c in host.failures if c.name == "test_swap_is_off")
    assert (swap.what, swap.expected, swap.found) == ("swap is off", "", "/swapfile 1G")
    assert "swapoff -a" in swap.hint
    plain = next(c for c in host.failures if c.name == "test_plain_assert")
    assert plain.what == "" and "assert '3' == '4'" in plain.message
    assert host.skipped_checks[0].message == "only on EL"
    containerd = next(c for c in runtime.failures if c.name == "test_containerd")
    assert runtime.status == "failed" and containerd.outcome == "error"
    by_node = next(c for c in runtime.failures if c.name == "test_by_node_name")
    assert (by_node.node, by_node.params, by_node.expected) == ("node-1", "22", "22")
    assert "does not answer on SSH" in containerd.hint
    assert cp.status == "skipped" and cp.reason.startswith("no cluster")
    assert report.explicit and report.exit_code == 1
    # the JUnit file is pytest's, with the expected/found properties
    junit_checks = {c.nodeid.split("::")[-1]: c for c in checks_from_junit(junit)}
    assert junit_checks["test_swap_is_off[local]"].found == "/swapfile 1G"
    log = Path(report.log)
    assert log.read_text().count("passed") >= 1 and log.stat().st_mode & 0o777 == 0o600
    assert "PytestUnknownMarkWarning" not in log.read_text()


def test_cli_refuses_unknown_layer(tmp_path):
    write_lab(tmp_path, base_lab())
    r = run_labctl("verify", "--layer", "kernel", cwd=tmp_path)
    assert r.returncode == 2 and "--layer: unknown layer(s) kernel" in r.stderr


def test_cli_without_inventory_says_so(tmp_path):
    write_lab(tmp_path, base_lab())
    r = run_labctl("verify", "--layer", "host", "--junit", "j.xml", cwd=tmp_path)
    assert r.returncode == 1
    assert "no inventory" in r.stdout and "run labctl up" in r.stdout
    assert 'name="host"' in (tmp_path / "j.xml").read_text()


def test_cli_help_states_the_exit_rule(tmp_path):
    r = run_labctl("verify", "--help", cwd=tmp_path)
    assert "0  every SELECTED layer passed" in r.stdout and "skipped" in r.stdout
