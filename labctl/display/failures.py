"""Why a run failed, per host: the host, the phase, the task and the real cause. Pure data.

From ansible-runner's runner_on_failed / runner_on_unreachable events:
the module's message, and when that message says nothing ("non-zero return
code", "MODULE FAILURE", "One or more items failed") the failed item, the
return code and the tail of stderr/stdout; journal lines when the role put
them in its message or registered them; for an unreachable host the ssh error.
A short hint is added for causes we know (labctl.display.hints.FAILURE_RULES).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from labctl.display.hints import failure_hint

TAIL = 15  # lines of stderr/stdout/journal shown

# Messages that say that something failed but not why.
GENERIC_MSGS = (
    "non-zero return code",
    "module failure",
    "one or more items failed",
    "all items completed",
    "",
)

# syslog-style journal line: "Nov 22 02:37:20 h3-w1 sh[433]: ..." or short-iso "2026-11-22T02:37:20+0000 host unit: ..."
JOURNAL_LINE = re.compile(
    r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) \S+ [\w@.\-/]+(?:\[\d+\])?: "
)


@dataclass
class Failure:
    host: str
    kind: str  # failed | unreachable | error (the playbook itself could not run)
    task: str = ""
    play: str = ""
    phase: str | None = None
    role: str | None = None
    task_path: str = ""
    msg: str = ""
    item: str | None = None
    rc: int | None = None
    cmd: str | None = None
    stderr: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    journal: list[str] = field(default_factory=list)
    hint: str | None = None

    @property
    def cause(self) -> str:
        """One line: the most telling thing we know."""
        if self.msg and self.msg.strip().lower() not in GENERIC_MSGS:
            return self.msg.strip().splitlines()[0]
        for lines in (self.stderr, self.journal, self.stdout):
            if lines:
                return lines[-1]
        if self.rc is not None:
            return f"exit code {self.rc} with no output"
        return self.msg.strip() or "no message"

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "kind": self.kind, "phase": self.phase, "play": self.play, "task": self.task,
                "role": self.role, "task_path": self.task_path, "msg": self.msg, "item": self.item, "rc": self.rc,
                "cmd": self.cmd, "stderr": self.stderr, "stdout": self.stdout, "journal": self.journal, "hint": self.hint,
                "cause": self.cause}

    def format(self) -> str:
        """The report a person reads: where, then why (text only; the CLI prints it)."""
        where = f"{self.phase} / " if self.phase else ""
        head = f"{self.host}: {'UNREACHABLE' if self.kind == 'unreachable' else 'FAILED'} in {where}{self.task or self.play}"
        lines = [head]
        if self.item is not None:
            lines.append(f"  item: {self.item}")
        msg_lines = [ln for ln in self.msg.strip().splitlines() if ln not in self.journal]
        if self.msg.strip().lower() in GENERIC_MSGS:
            # "non-zero return code" says nothing: the cause is the last line of stderr (or stdout)
            msg_lines = [f"{self.cause}" + (f" ({self.msg.strip()})" if self.msg.strip() else "")]
        if msg_lines:
            lines.append(f"  cause: {msg_lines[0]}")
            lines += [f"         {ln}" for ln in msg_lines[1:TAIL]]
        if self.cmd:
            lines.append(f"  command: {self.cmd}")
        if self.rc is not None:
            lines.append(f"  rc: {self.rc}")
        for label, body in (("stderr", self.stderr), ("stdout", self.stdout if not self.stderr else []),
                            ("journal", self.journal)):
            if body:
                lines.append(f"  {label} (last {len(body)} lines):")
                lines += [f"    {ln}" for ln in body]
        if self.task_path:
            lines.append(f"  at: {self.task_path}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


def _lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value).rstrip("\n").splitlines()


def _tail(lines: list[str], n: int = TAIL) -> list[str]:
    lines = [ln for ln in lines if ln.strip()]
    return lines[-n:]


def _failed_item(res: dict[str, Any]) -> dict[str, Any] | None:
    for r in res.get("results") or []:
        if isinstance(r, dict) and (r.get("failed") or r.get("unreachable")):
            return r
    return None


def journal_lines(*texts: str) -> list[str]:
    """Lines that look like journal output, in order."""
    out: list[str] = []
    for text in texts:
        out += [ln for ln in _lines(text) if JOURNAL_LINE.match(ln.strip())]
    return out


def failure_from_event(event: dict[str, Any], phase: str | None = None) -> Failure:
    """A Failure from one runner_on_failed / runner_on_unreachable event."""
    data = event.get("event_data") or {}
    res = data.get("res") or {}
    if not isinstance(res, dict):
        res = {"msg": str(res)}
    kind = "unreachable" if event.get("event") == "runner_on_unreachable" or res.get("unreachable") else "failed"
    f = Failure(host=data.get("host", "?"), kind=kind, task=data.get("task", ""), play=data.get("play", ""),
                phase=phase, role=data.get("role"), task_path=data.get("task_path", ""))
    detail = res
    item = _failed_item(res)
    if item is not None:
        detail = item
        label = item.get("_ansible_item_label", item.get("item"))
        f.item = str(label) if label is not None else None
    msg = str(detail.get("msg") or res.get("msg") or "")
    if msg.strip().lower() in GENERIC_MSGS and res.get("reason"):
        # include_role / include_tasks failures carry the cause in "reason" ("All items completed" in msg)
        msg = str(res["reason"])
    if "censored" in res and not msg:
        msg = ("the task's output is hidden (no_log: true) because it carries a secret; "
               "the role should say what failed without the secret")
    f.msg = msg
    rc = detail.get("rc")
    cmd = detail.get("cmd")
    if cmd:
        f.cmd = " ".join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd)
    f.rc = int(rc) if isinstance(rc, int) or (isinstance(rc, str) and rc.lstrip("-").isdigit()) else None
    stderr = detail.get("stderr_lines") or _lines(detail.get("stderr")) or _lines(detail.get("module_stderr"))
    stdout = detail.get("stdout_lines") or _lines(detail.get("stdout")) or _lines(detail.get("module_stdout"))
    registered = detail.get("journal") or detail.get("journal_lines") or []
    f.journal = _tail(_lines(registered) or journal_lines(msg, "\n".join(stderr), "\n".join(stdout)))
    f.stderr = _tail([ln for ln in stderr if ln not in f.journal])
    f.stdout = _tail([ln for ln in stdout if ln not in f.journal])
    if f.rc is not None and f.rc == 0 and f.msg.strip().lower() in GENERIC_MSGS:
        f.rc = None
    f.hint = failure_hint(f)
    return f


def playbook_error(events: list[dict[str, Any]]) -> str | None:
    """The error ansible-playbook printed when it could not run at all (syntax, missing file...).

    It arrives as plain output ("verbose" events), one line per event: take the line
    with the error and the ones after it, up to a blank line.
    """
    lines: list[str] = []
    for ev in events:
        if ev.get("event") not in ("verbose", "error", ""):
            if lines:
                break
            continue
        text = str(ev.get("stdout") or "")
        if not lines:
            for marker in ("ERROR!", "[ERROR]:"):
                if marker in text:
                    lines.append(text[text.find(marker):].strip())
                    break
            continue
        if not text.strip() or len(lines) >= TAIL:
            break
        lines.append(text.rstrip())
    return "\n".join(lines) if lines else None


def collect(events: list[dict[str, Any]], play_phases: dict[str, str] | None = None,
            recap: dict[str, dict[str, int]] | None = None) -> list[Failure]:
    """The failure that stopped each host: its last failed/unreachable event that was not
    ignored. With a recap, hosts whose failure was rescued are left out."""
    play_phases = play_phases or {}
    last: dict[str, Failure] = {}
    for ev in events:
        if ev.get("event") not in ("runner_on_failed", "runner_on_unreachable"):
            continue
        data = ev.get("event_data") or {}
        if data.get("ignore_errors"):
            continue
        f = failure_from_event(ev, play_phases.get(data.get("play", "")))
        last[f.host] = f
    out = []
    for host, f in last.items():
        if recap is not None and host in recap:
            r = recap[host]
            if not (r.get("failed") or r.get("unreachable")):
                continue
        out.append(f)
    if not out and recap is not None:
        err = playbook_error(events)
        if err:
            out.append(Failure(host="(controller)", kind="error", task="ansible-playbook", msg=err))
    return out
