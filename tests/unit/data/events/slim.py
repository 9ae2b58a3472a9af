"""Slim a recorded provision event log for the fixtures here (see README.md)."""

from __future__ import annotations

import json
import sys

DROP_EVENT_DATA = ("playbook_uuid", "uuid", "runner_ident", "artifact_data")


def slim(ev: dict) -> dict:
    ev = {k: v for k, v in ev.items() if k not in ("runner_ident", "pid", "parent_uuid")}
    data = ev.get("event_data") or {}
    for k in DROP_EVENT_DATA:
        data.pop(k, None)
    res = data.get("res")
    if isinstance(res, dict):
        for r in [res, *[x for x in res.get("results") or [] if isinstance(x, dict)]]:
            r.pop("invocation", None)
            r.pop("status", None)
            if "ansible_facts" in r:
                r["ansible_facts"] = {"slimmed": True}
    return ev


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as fh:
        for line in fh:
            print(json.dumps(slim(json.loads(line)), sort_keys=False))
