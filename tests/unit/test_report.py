"""The verify report: parsing results (plugin JSON, JUnit), the text view and the HTML page."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from labctl.display.report import (
    Check,
    LayerResult,
    Report,
    checks_from_json,
    checks_from_junit,
    layer_result,
    parse_check_message,
    render_html,
    render_text,
)

MESSAGE = ("_check.CheckFailed: docker-registry running\nexpected: active\nfound: inactive\nnode: registry\n"
           "detail:\n$ systemctl is-active docker-registry\nrc=3")


def test_parse_check_message():
    assert parse_check_message(MESSAGE) == {
        "what": "docker-registry running", "expected": "active", "found": "inactive", "node": "registry",
        "detail": "$ systemctl is-active docker-registry\nrc=3"}


def test_parse_plain_assertion_gives_nothing():
    assert parse_check_message("AssertionError: assert 3 == 4") == {}


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="labctl-verify" errors="1" failures="1" skipped="1" tests="4">
<testcase classname="test_registry" name="test_service[ansible://registry]" time="0.120">
 <properties><property name="node" value="registry"/></properties>
 <failure message="_check.CheckFailed: docker-registry running&#10;expected: active&#10;found: inactive"
 >trace</failure></testcase>
<testcase classname="test_registry" name="test_port[ansible://registry-5000]" time="0.050"/>
<testcase classname="test_control_plane" name="test_nodes" time="0.010">
 <skipped message="Skipped: no kubectl">x</skipped></testcase>
<testcase classname="test_runtime" name="test_x[ansible://node]" time="0.010">
 <error message="RuntimeError: ssh">boom</error></testcase>
</testsuite></testsuites>"""


def test_checks_from_junit(tmp_path: Path):
    p = tmp_path / "j.xml"
    p.write_text(JUNIT)
    checks = checks_from_junit(p)
    assert [(c.layer, c.outcome) for c in checks] == [("registry", "failed"), ("registry", "passed"),
                                                    ("control-plane", "skipped"), ("runtime", "error")]
    failed = checks[0]
    assert (failed.node, failed.what, failed.expected, failed.found) == ("registry", "docker-registry running",
                                                                       "active", "inactive")
    assert checks[2].message == "no kubectl"


def test_checks_from_plugin_json(tmp_path: Path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"exitstatus": 1, "tests": [
        {"nodeid": "tests/infra/test_host.py::test_swap[ansible://node]", "layer": "host", "name": "test_swap",
         "outcome": "failed", "duration": 0.1, "message": "x", "longrepr": "E   boom", "node": "node", "params": "",
         "props": {"what": "swap is off", "expected": "", "found": "/swapfile"}}]}))
    (c,) = checks_from_json(p)
    assert (c.layer, c.node, c.what, c.found, c.bad) == ("host", "node", "swap is off", "/swapfile", True)


def test_layer_result_status():
    ok = Check("host", "a", "test_a", "passed")
    bad = Check("host", "b", "test_b", "failed")
    skip = Check("host", "c", "test_c", "skipped", message="only on EL")
    assert layer_result("host", [ok, skip]).status == "passed"
    assert layer_result("host", [ok, bad]).status == "failed"
    only_skips = layer_result("host", [skip])
    assert only_skips.status == "skipped" and "only on EL" in only_skips.reason
    assert layer_result("runtime", [ok]).reason == "no checks collected"


def _report() -> Report:
    fail = Check("registry", "tests/infra/test_registry.py::test_up[ansible://registry]", "test_up", "failed",
                 node="registry", what="docker-registry <running>", expected="active", found="inactive",
                 detail="rc=3", hint="systemctl status docker-registry")
    return Report("k8s-lab", [
        LayerResult("host", "passed", checks=[Check("host", "h", "test_swap", "passed", node="master")]),
        LayerResult("registry", "failed", checks=[fail, Check("registry", "r", "test_port", "passed", node="registry")]),
        LayerResult("control-plane", "skipped", reason="no cluster (provision stopped before kubeadm)"),
    ], duration=2.5)


def test_render_text():
    text = render_text(_report())
    assert "registry       failed   1 passed, 1 failed" in text
    assert "control-plane  skipped  -  -- no cluster (provision stopped before kubeadm)" in text
    assert "✗ registry · registry · docker-registry <running>" in text
    assert "expected: active" in text and "found:    inactive" in text and "hint:     systemctl status" in text
    assert text.rstrip().endswith("FAILED -- 2 passed, 1 failed, 0 skipped in 2.5s (exit 1)")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_render_html_is_self_contained_and_structured():
    page = _Page()
    page.feed(render_html(_report()))
    tags = page.tags
    rows = [a for t, a in tags if t == "tr" and "data-layer" in a]
    assert [(a["data-layer"], a["data-status"]) for a in rows] == [
        ("host", "passed"), ("registry", "failed"), ("control-plane", "skipped")]
    failures = [a for t, a in tags if t == "div" and a.get("class") == "failure"]
    assert failures == [{"class": "failure", "data-layer": "registry", "data-node": "registry"}]
    text = "".join(page.text)
    assert "docker-registry <running>" in text  # escaped in the page, text again once parsed
    assert "no cluster (provision stopped before kubeadm)" in text and "systemctl status docker-registry" in text
    assert not [t for t, a in tags if t in ("script", "link", "img", "iframe")]
    assert not [a for t, a in tags if any(str(v).startswith(("http:", "https:", "//")) for v in a.values())]
    assert ("span", {"class": "verdict bad", "id": "verdict"}) in tags


def test_rich_view_takes_brackets_literally():
    """Check titles carry parametrize ids like [/etc/passwd]: rich must not read them as markup."""
    from rich.console import Console

    from labctl.display.report import rich_renderables

    report = _report()
    report.layers[1].checks[0].what = ""
    report.layers[1].checks[0].params = "/etc/[x]"
    report.layers[1].checks[0].found = "[/bold] ['inactive', 'enabled']"
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for part in rich_renderables(report):
        console.print(part)
    text = console.export_text()
    assert "up [/etc/[x]]" in text and "[/bold] ['inactive', 'enabled']" in text
