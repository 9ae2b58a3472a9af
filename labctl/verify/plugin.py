"""A pytest plugin `labctl verify` loads (`-p labctl.verify.plugin`) into the testinfra run.

On every worker it attaches to each test report, as user_properties:
  node     the inventory name of the testinfra host the test ran on
  params   the parametrize id without the host part ("overlay", "6443/tcp")
  what, expected, found, detail   from a CheckFailed (tests/infra/_check.py)
so they reach the controller process (pytest-xdist serializes user_properties) and
the JUnit XML (<properties>).

On the controller process it collects one record per test and writes them as JSON
to $LABCTL_VERIFY_RESULTS at the end of the session; labctl/display/report.py reads it.

On every process it hands testinfra the inventory `labctl verify` points it at
(--ansible-inventory), read from the generated files: testinfra would otherwise run
`ansible-inventory --list` in each process (0.7 s of a 6 s run) to learn the same hosts and
variables. Only an inventory of the shape labctl writes is read this way; any other is left
to ansible-inventory.
Only pytest and yaml are imported here (testinfra when it runs), never labctl's CLI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

RESULTS_ENV = "LABCTL_VERIFY_RESULTS"
MAX_LONGREPR = 20_000
CHECK_FIELDS = ("what", "expected", "found", "node", "detail")


def _host_name(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    host = callspec.params.get("_testinfra_host")
    if host is None:
        node = callspec.params.get("node")  # suites that parametrize by node name themselves
        return node if isinstance(node, str) else None
    backend = getattr(host, "backend", None)
    name = getattr(backend, "host", None)  # AnsibleBackend keeps the inventory name
    if isinstance(name, str):
        return name
    try:
        return str(backend.get_hostname())
    except Exception:  # pragma: no cover - other backends
        return None


def _params(item: pytest.Item, node: str | None) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return ""
    ident = callspec.id
    if "_testinfra_host" not in callspec.params and "node" in callspec.params:
        rest = {k: v for k, v in callspec.params.items() if k != "node"}
        return "-".join(str(v) for v in rest.values())
    if node:
        for prefix in ("ansible://", "ssh://", "paramiko://", "local://", "docker://"):
            ident = ident.replace(f"{prefix}{node}", "\0")
        ident = "-".join(p for p in ident.replace("-\0", "\0").replace("\0-", "\0").split("\0") if p)
    return ident


def _set_prop(item: pytest.Item, key: str, value: Any) -> None:
    if value in (None, ""):
        return
    if not any(k == key for k, _ in item.user_properties):
        item.user_properties.append((key, value))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    if call.when == "setup":
        node = _host_name(item)
        _set_prop(item, "node", node)
        _set_prop(item, "params", _params(item, node))
    exc = call.excinfo.value if call.excinfo is not None else None
    if exc is not None and getattr(exc, "labctl_check", False):
        for key in CHECK_FIELDS:
            value = getattr(exc, key, None)
            if key == "node" and value:
                # the check names its node explicitly: it wins over the host parameter
                item.user_properties[:] = [(k, v) for k, v in item.user_properties if k != "node"]
            _set_prop(item, key, value)
    yield


def _layer_of(nodeid: str) -> str:
    """tests/infra/test_control_plane.py::test_x[...] -> control-plane."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return module.removeprefix("test_").replace("_", "-")


def _message(report: Any) -> str:
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, lineno, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    return str(longrepr).strip().splitlines()[-1] if str(longrepr).strip() else ""


class ResultCollector:
    """Merge the setup/call/teardown reports of each test into one record."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []

    def _record(self, nodeid: str) -> dict[str, Any]:
        rec = self.records.get(nodeid)
        if rec is None:
            name = nodeid.split("::")[-1]
            rec = {
                "nodeid": nodeid,
                "layer": _layer_of(nodeid),
                "name": name.split("[", 1)[0],
                "outcome": "passed",
                "duration": 0.0,
                "message": "",
                "longrepr": "",
                "props": {},
            }
            self.records[nodeid] = rec
            self.order.append(nodeid)
        return rec

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rec = self._record(report.nodeid)
        rec["duration"] = round(rec["duration"] + float(report.duration or 0.0), 3)
        for key, value in report.user_properties:
            rec["props"][key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if hasattr(report, "wasxfail"):
            return
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
            if rec["outcome"] in ("passed", "skipped"):
                rec["outcome"] = outcome
                rec["message"] = _message(report)
                rec["when"] = report.when
            rec["longrepr"] = (rec["longrepr"] + "\n" + str(report.longrepr)).strip()[:MAX_LONGREPR]
        elif report.skipped and rec["outcome"] == "passed":
            rec["outcome"] = "skipped"
            rec["message"] = _message(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            rec = self._record(report.nodeid or "collection")
            rec.update(outcome="error", when="collect", message=_message(report),
                       longrepr=str(report.longrepr)[:MAX_LONGREPR])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        for nodeid in self.order:
            rec = self.records[nodeid]
            rec["node"] = rec["props"].pop("node", None)
            rec["params"] = rec["props"].pop("params", "")
        data = {"exitstatus": int(exitstatus), "tests": [self.records[n] for n in self.order]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(data, indent=1))


# ---------------------------------------------------------------- the inventory, read once

GROUP_KEYS = {"hosts", "children"}


def labctl_inventory(hosts_file: Path) -> dict[str, Any] | None:
    """What `ansible-inventory --list -i hosts_file` prints, for an inventory labctl generated.

    labctl writes hosts.yml (groups of hosts with host variables, groups of groups) and
    group_vars/all.yml beside it; a host's variables are group_vars/all.yml overridden by its
    own. Anything else (group `vars:`, other group_vars or host_vars files, another format)
    returns None: Ansible's precedence rules are then Ansible's business.
    tests/unit/test_verify_plugin.py compares the result with the real ansible-inventory.
    """
    inv_dir = hosts_file.parent
    group_vars = inv_dir / "group_vars"
    if hosts_file.suffix not in (".yml", ".yaml") or (inv_dir / "host_vars").exists():
        return None
    if group_vars.exists() and sorted(p.name for p in group_vars.iterdir()) != ["all.yml"]:
        return None
    try:
        doc = yaml.safe_load(hosts_file.read_text())
        all_vars = yaml.safe_load((group_vars / "all.yml").read_text()) if group_vars.exists() else {}
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict) or set(doc) != {"all"} or not isinstance(all_vars or {}, dict):
        return None
    groups: dict[str, dict[str, list[str]]] = {}
    hostvars: dict[str, dict[str, Any]] = {}

    def walk(name: str, body: Any) -> bool:
        body = body or {}
        if not isinstance(body, dict) or not set(body) <= GROUP_KEYS:
            return False
        group = groups.setdefault(name, {"hosts": [], "children": []})
        for host, hv in (body.get("hosts") or {}).items():
            if not isinstance(hv or {}, dict):
                return False
            if host not in group["hosts"]:
                group["hosts"].append(host)
            hostvars.setdefault(host, dict(all_vars or {})).update(hv or {})
        for child, child_body in (body.get("children") or {}).items():
            if child not in group["children"]:
                group["children"].append(child)
            if not walk(child, child_body):
                return False
        return True

    if not walk("all", doc["all"]):
        return None
    if groups["all"]["hosts"]:
        return None  # hosts directly under all land in `ungrouped`: not a shape labctl writes
    groups["all"]["children"].insert(0, "ungrouped")
    out: dict[str, Any] = {"_meta": {"hostvars": {h: v for h, v in hostvars.items() if v}}}
    for name, group in groups.items():
        body = {k: v for k, v in group.items() if v and not (name == "all" and k == "hosts")}
        if body:  # ansible-inventory leaves empty groups out (they stay listed as children)
            out[name] = body
    try:
        return json.loads(json.dumps(out))  # JSON's types, as ansible-inventory's output has
    except (TypeError, ValueError):  # a YAML date or the like: Ansible knows how it prints
        return None


def seed_testinfra_inventory(paths: list[str]) -> bool:
    """Give testinfra's Ansible runner for each path (spellings of one file) the inventory read above.

    False when the inventory is not labctl's shape: testinfra runs ansible-inventory then.
    """
    paths = [p for p in dict.fromkeys(paths) if p]
    inventory = labctl_inventory(Path(paths[0])) if paths else None
    if inventory is None:
        return False
    from testinfra.utils.ansible_runner import AnsibleRunner

    first = Path(paths[0]).resolve()
    for path in paths:
        if Path(path).resolve() == first:
            # `inventory` is a functools.cached_property: a value set on the instance is what it returns
            AnsibleRunner.get_runner(path).inventory = json.loads(json.dumps(inventory))
    return True


def pytest_configure(config: pytest.Config) -> None:
    inventory = config.getoption("ansible_inventory", None)
    if inventory:  # the suites' node_host() passes $LABCTL_INVENTORY: the same file, maybe spelled otherwise
        seed_testinfra_inventory([inventory, os.environ.get("LABCTL_INVENTORY", "")])
    if hasattr(config, "workerinput"):  # an xdist worker: the controller collects
        return
    target = os.environ.get(RESULTS_ENV)
    if target:
        config.pluginmanager.register(ResultCollector(Path(target)), "labctl-verify-results")
