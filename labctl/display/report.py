"""The verify report: results per layer, parsed from the pytest run; text, rich and HTML views.

Data in, strings (or rich renderables) out; nothing here prints. The model:
  Check        one test on one node (outcome, what/expected/found, hint)
  LayerResult  one layer: passed | failed | skipped (+ why), its checks
  Report       the layers in order, the selection, the exit code rule
"""

from __future__ import annotations

import html
import json
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labctl.state import REPO_ROOT

OUTCOMES = ("passed", "failed", "error", "skipped")
TEMPLATES = REPO_ROOT / "templates"


@dataclass
class Check:
    layer: str
    nodeid: str
    name: str
    outcome: str  # passed | failed | error | skipped
    node: str | None = None
    params: str = ""
    duration: float = 0.0
    message: str = ""  # the failure's one-line cause or the skip reason
    what: str = ""
    expected: str = ""
    found: str = ""
    detail: str = ""
    longrepr: str = ""
    hint: str = ""

    @property
    def bad(self) -> bool:
        return self.outcome in ("failed", "error")

    @property
    def title(self) -> str:
        """What the check is, for people: the expect() text, else the test name and its parameters."""
        if self.what:
            return self.what
        label = self.name.removeprefix("test_").replace("_", " ")
        return f"{label} [{self.params}]" if self.params else label

    def haystack(self) -> str:
        """Every text of the check, lowercased, for hint matching."""
        errors = "\n".join(line for line in self.longrepr.splitlines() if line.startswith("E "))
        return "\n".join((self.layer, self.name, self.params, self.what, self.expected, self.found,
                          self.detail, self.message, errors[-4000:])).lower()


@dataclass
class LayerResult:
    layer: str
    status: str  # passed | failed | skipped
    reason: str = ""  # why skipped
    blocking: bool = False  # a skip that means something is broken (counts as not passed even unselected)
    checks: list[Check] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        if outcome == "failed":
            return sum(1 for c in self.checks if c.bad)
        return sum(1 for c in self.checks if c.outcome == outcome)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.bad]

    @property
    def skipped_checks(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "skipped"]


@dataclass
class Report:
    lab: str
    layers: list[LayerResult]
    explicit: bool = False  # --layer given: every selected layer must pass
    started: float = field(default_factory=time.time)
    duration: float = 0.0
    workers: str = ""
    log: str = ""  # the pytest log file

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def exit_code(self) -> int:
        """0 only when every selected layer passed; see `labctl verify --help` for the rule."""
        for lr in self.layers:
            if lr.status == "failed":
                return 1
            if lr.status == "skipped" and (self.explicit or lr.blocking):
                return 1
        if not any(lr.status == "passed" for lr in self.layers):
            return 1
        return 0

    @property
    def totals(self) -> dict[str, int]:
        return {o: sum(lr.count(o) for lr in self.layers) for o in ("passed", "failed", "skipped")}

    def to_dict(self) -> dict[str, Any]:
        return {"lab": self.lab, "explicit": self.explicit, "started": self.started, "duration": self.duration,
                "exit_code": self.exit_code, "layers": [asdict(lr) for lr in self.layers]}


# ---------------------------------------------------------------- parsing

_FIELD = re.compile(r"^(expected|found|node): (.*)$", re.M)


def parse_check_message(text: str) -> dict[str, str]:
    """The what/expected/found/node/detail of a CheckFailed message (tests/infra/_check.py)."""
    text = (text or "").strip()
    text = re.sub(r"^(?:[\w.]+\.)?(?:CheckFailed|AssertionError): ", "", text)
    fields = dict(_FIELD.findall(text))
    if "expected" not in fields or "found" not in fields:
        return {}
    out = {"what": text.split("\n", 1)[0].strip(), **fields}
    if "\ndetail:\n" in text:
        out["detail"] = text.split("\ndetail:\n", 1)[1]
    return out


def checks_from_json(path: Path) -> list[Check]:
    """Records written by labctl/verify/plugin.py."""
    data = json.loads(Path(path).read_text())
    out: list[Check] = []
    for rec in data.get("tests", []):
        props = rec.get("props", {})
        c = Check(layer=rec["layer"], nodeid=rec["nodeid"], name=rec["name"], outcome=rec["outcome"],
                  node=rec.get("node"), params=rec.get("params", ""), duration=float(rec.get("duration", 0.0)),
                  message=rec.get("message", ""), longrepr=rec.get("longrepr", ""),
                  what=str(props.get("what", "")), expected=str(props.get("expected", "")),
                  found=str(props.get("found", "")), detail=str(props.get("detail", "")))
        if c.bad and not c.what:
            _fill_from_message(c, c.message)
        out.append(c)
    return out


def _fill_from_message(c: Check, text: str) -> None:
    parsed = parse_check_message(text)
    c.what = c.what or parsed.get("what", "")
    c.expected = c.expected or parsed.get("expected", "")
    c.found = c.found or parsed.get("found", "")
    c.detail = c.detail or parsed.get("detail", "")
    c.node = c.node or parsed.get("node")


def checks_from_junit(path: Path) -> list[Check]:
    """Tests of a JUnit XML file written by pytest (with or without labctl's plugin)."""
    root = ET.parse(path).getroot()
    out: list[Check] = []
    for tc in root.iter("testcase"):
        classname = tc.get("classname", "")
        full = tc.get("name", "")
        module = classname.split(".")[-1] if classname else ""
        props = {p.get("name"): p.get("value", "") for p in tc.iter("property")}
        name, _, rest = full.partition("[")
        params = props.get("params", rest.rstrip("]") if rest else "")
        c = Check(layer=module.removeprefix("test_").replace("_", "-"),
                  nodeid=f"{classname.replace('.', '/')}.py::{full}", name=name, outcome="passed",
                  node=props.get("node") or None, params=params, duration=float(tc.get("time", "0") or 0),
                  what=props.get("what", ""), expected=props.get("expected", ""), found=props.get("found", ""),
                  detail=props.get("detail", ""))
        for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = tc.find(tag)
            if el is not None:
                c.outcome = outcome
                c.message = (el.get("message") or "").removeprefix("Skipped: ")
                c.longrepr = el.text or ""
                break
        if c.bad and not c.what:
            _fill_from_message(c, c.message if "expected:" in c.message else c.longrepr)
        out.append(c)
    return out


def layer_result(layer: str, checks: list[Check]) -> LayerResult:
    """The status of a layer that ran: failed if any check failed, skipped if none passed."""
    mine = [c for c in checks if c.layer == layer]
    if any(c.bad for c in mine):
        return LayerResult(layer, "failed", checks=mine)
    if not any(c.outcome == "passed" for c in mine):
        reasons = sorted({c.message for c in mine if c.message})
        why = "every check skipped: " + "; ".join(reasons) if mine else "no checks collected"
        return LayerResult(layer, "skipped", reason=why, checks=mine)
    return LayerResult(layer, "passed", checks=mine)


# ---------------------------------------------------------------- views

def _counts(lr: LayerResult) -> str:
    if lr.status == "skipped" and not lr.checks:
        return "-"
    parts = [f"{lr.count('passed')} passed"]
    if lr.count("failed"):
        parts.append(f"{lr.count('failed')} failed")
    if lr.count("skipped"):
        parts.append(f"{lr.count('skipped')} skipped")
    return ", ".join(parts)


def _status_word(lr: LayerResult, explicit: bool) -> str:
    if lr.status != "skipped":
        return lr.status
    return "skipped (counts as failure)" if (explicit or lr.blocking) else "skipped"


def _check_lines(c: Check) -> list[str]:
    where = c.node or "-"
    lines = [f"  ✗ {c.layer} · {where} · {c.title}"]
    if c.expected or c.found:
        lines += [f"      expected: {c.expected}", f"      found:    {c.found}"]
    elif c.message:
        lines.append(f"      error:    {c.message.splitlines()[0][:300]}")
    if c.hint:
        lines.append(f"      hint:     {c.hint}")
    return lines


def summary_line(report: Report) -> str:
    t = report.totals
    verdict = "PASSED" if report.ok else "FAILED"
    return (f"verify {report.lab}: {verdict} -- {t['passed']} passed, {t['failed']} failed, "
            f"{t['skipped']} skipped in {report.duration:.1f}s (exit {report.exit_code})")


def render_text(report: Report) -> str:
    """The plain-text report (non-TTY output, logs)."""
    width = max((len(lr.layer) for lr in report.layers), default=5)
    swidth = max((len(_status_word(lr, report.explicit)) for lr in report.layers), default=6)
    out = [f"labctl verify -- lab {report.lab}", ""]
    for lr in report.layers:
        line = f"  {lr.layer:<{width}}  {_status_word(lr, report.explicit):<{swidth}}  {_counts(lr)}"
        if lr.reason:
            line += f"  -- {lr.reason}"
        out.append(line.rstrip())
    failures = [c for lr in report.layers for c in lr.failures]
    if failures:
        out += ["", f"failures ({len(failures)}):"]
        for c in failures:
            out += _check_lines(c)
    skipped = [c for lr in report.layers if lr.status != "skipped" for c in lr.skipped_checks]
    if skipped:
        out += ["", "skipped checks:"]
        out += [f"  - {c.layer} · {c.node or '-'} · {c.title}: {c.message}" for c in skipped]
    out += ["", summary_line(report)]
    if report.log:
        out.append(f"pytest log: {report.log}")
    return "\n".join(out) + "\n"


def rich_renderables(report: Report) -> list[Any]:
    """The same report as rich renderables (a table per section), for a terminal."""
    from rich.table import Table
    from rich.text import Text

    colour = {"passed": "green", "failed": "red", "skipped": "yellow"}
    layers = Table(title=f"labctl verify -- lab {report.lab}", title_justify="left", show_lines=False)
    for col in ("layer", "status", "checks", "why"):
        layers.add_column(col)
    for lr in report.layers:
        layers.add_row(Text(lr.layer), Text(_status_word(lr, report.explicit), style=colour.get(lr.status, "")),
                       Text(_counts(lr)), Text(lr.reason))
    out: list[Any] = [layers]
    failures = [c for lr in report.layers for c in lr.failures]
    if failures:
        ft = Table(title=f"failures ({len(failures)})", title_justify="left", show_lines=True)
        for col in ("layer", "node", "check", "expected", "found", "hint"):
            ft.add_column(col, overflow="fold")
        for c in failures:
            found = c.found or (c.message.splitlines()[0][:300] if c.message else "")
            ft.add_row(Text(c.layer), Text(c.node or "-"), Text(c.title), Text(c.expected), Text(found, style="red"),
                       Text(c.hint))
        out.append(ft)
    skipped = [c for lr in report.layers if lr.status != "skipped" for c in lr.skipped_checks]
    if skipped:
        st = Table(title="skipped checks", title_justify="left")
        for col in ("layer", "node", "check", "why"):
            st.add_column(col, overflow="fold")
        for c in skipped:
            st.add_row(Text(c.layer), Text(c.node or "-"), Text(c.title), Text(c.message))
        out.append(st)
    out.append(Text(summary_line(report), style="bold green" if report.ok else "bold red"))
    if report.log:
        out.append(Text(f"pytest log: {report.log}", style="dim"))
    return out


def render_html(report: Report) -> str:
    """A self-contained HTML page (inline CSS, no script, no external resource)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    tpl = env.get_template("verify-report.html.j2")
    return tpl.render(
        report=report,
        status_word=lambda lr: _status_word(lr, report.explicit),
        counts=_counts,
        summary=summary_line(report),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(report.started)),
        esc=html.escape,
    )
