"""expect(): a failing check says what it checked, what it expected and what it found.

Every testinfra module may use it (tests/infra is on sys.path while pytest runs these
suites, so `from _check import expect, check` works):

    expect(found, expected, what, *, node=None, detail="")
        fails unless found == expected.
    check(ok, what, *, expected, found, node=None, detail="")
        fails unless ok (for anything that is not an equality: "in", ">=", a regex ...).

`what` names the check in words a user reads ("swap is off", "containerd SystemdCgroup");
`expected`/`found` are short values (shown on one line, cut at 300 characters);
`detail` carries the evidence (command output, journal lines; cut at 40 lines);
`node` is only needed when the test is not parametrized by testinfra's `host`
(labctl's pytest plugin takes the node from `host` otherwise).
`found` and `detail` may be callables (`detail=lambda: _journal(host)`): evidence that costs a
command on the node is then gathered only when the check fails.

The raised CheckFailed is an AssertionError, so pytest reports it as a failure; the
labctl pytest plugin (labctl/verify/plugin.py) copies the fields into the test report,
and the message has a fixed shape that labctl/display/report.py also parses from JUnit XML:

    <what>
    expected: <expected>
    found: <found>
    [node: <node>]
    [detail:
    <detail lines>]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_VALUE = 300
MAX_DETAIL_LINES = 40


def show(value: Any) -> str:
    """One line for a value: strings as they are, the rest as repr, newlines escaped, cut."""
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\r", "").replace("\n", "\\n")
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _cut_detail(detail: str) -> str:
    lines = str(detail).rstrip().splitlines()
    if len(lines) > MAX_DETAIL_LINES:
        lines = lines[:10] + [f"… {len(lines) - MAX_DETAIL_LINES} lines cut …"] + lines[-(MAX_DETAIL_LINES - 10):]
    return "\n".join(lines)


class CheckFailed(AssertionError):
    """A check that did not hold; carries what/expected/found for the report."""

    labctl_check = True  # the marker labctl's pytest plugin looks for

    def __init__(self, what: str, expected: Any, found: Any, node: str | None = None, detail: str = ""):
        self.what = what
        self.expected = show(expected)
        self.found = show(found)
        self.node = node
        self.detail = _cut_detail(detail) if detail else ""
        lines = [what, f"expected: {self.expected}", f"found: {self.found}"]
        if node:
            lines.append(f"node: {node}")
        if self.detail:
            lines += ["detail:", self.detail]
        super().__init__("\n".join(lines))


def _evidence(value: Any) -> Any:
    return value() if callable(value) else value


def expect(found: Any, expected: Any, what: str, *, node: str | None = None,
           detail: str | Callable[[], str] = "") -> None:
    """Fail with a structured message unless found == expected."""
    __tracebackhide__ = True
    if found != expected:
        raise CheckFailed(what, expected, found, node=node, detail=_evidence(detail))


def check(ok: Any, what: str, *, expected: Any, found: Any, node: str | None = None,
          detail: str | Callable[[], str] = "") -> None:
    """Fail with a structured message unless ok is true."""
    __tracebackhide__ = True
    if not ok:
        raise CheckFailed(what, expected, _evidence(found), node=node, detail=_evidence(detail))


def output(cmd: Any) -> str:
    """The evidence of a testinfra CommandResult, for `detail=`: the command, rc, stdout, stderr."""
    command = getattr(cmd, "command", "")
    if isinstance(command, bytes):
        command = command.decode(errors="replace")
    parts = [f"$ {command}".rstrip(), f"rc={getattr(cmd, 'rc', '?')}"]
    out = (getattr(cmd, "stdout", "") or "").rstrip()
    err = (getattr(cmd, "stderr", "") or "").rstrip()
    if out:
        parts.append(out)
    if err:
        parts += ["stderr:", err]
    return "\n".join(parts)
