#!/usr/bin/env python3
"""Measure `labctl verify` on a running, provisioned lab; prints numbers and ratios, asserts nothing.

    python bench/verify.py --lab lab.yml [--layer host,runtime,registry] [--repeat 3] [--suites DIR]

Variants (median wall time of --repeat runs each, the same checks every time):
  serial      -n 0, ssh with the inventory's ControlPath (ControlMaster/ControlPersist)
  xdist-2     -n 2 --dist loadgroup
  xdist-auto  -n auto
  no-control  -n 0 with connection reuse off (every check opens a new SSH connection)
--suites DIR runs another tests/infra (e.g. a development suite) through the same driver.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.model.config import load_lab  # noqa: E402
from labctl.state import StateDir  # noqa: E402
from labctl.verify.run import INFRA_DIR, gather_facts, parse_selection, verify  # noqa: E402


def no_control_env(state: StateDir) -> dict[str, str]:
    """testinfra reads ANSIBLE_SSH_COMMON_ARGS last and ssh_args from ANSIBLE_CONFIG: override both."""
    cfg = Path(tempfile.mkstemp(suffix=".cfg")[1])
    cfg.write_text("[defaults]\n[ssh_connection]\nssh_args = -o ControlMaster=no -o ControlPath=none\n")
    return {"ANSIBLE_CONFIG": str(cfg),
            "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={state.known_hosts} -o StrictHostKeyChecking=yes "
                                       "-o ControlMaster=no -o ControlPath=none -o ConnectTimeout=10"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", type=Path, default=Path("lab.yml"))
    ap.add_argument("--layer", default="host,runtime,registry")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--suites", type=Path, default=INFRA_DIR)
    args = ap.parse_args()
    lab = load_lab(args.lab)
    state = StateDir(args.lab, lab.name)
    layers, _ = parse_selection(args.layer)
    facts = gather_facts(lab, state, layers)
    variants = [("serial", "0", {}), ("xdist-2", "2", {}), ("xdist-auto", "auto", {}),
                ("no-control", "0", no_control_env(state))]
    results: dict[str, float] = {}
    checks = 0
    for name, workers, env in variants:
        times = []
        for _ in range(args.repeat):
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                t0 = time.monotonic()
                report = verify(args.lab, lab, args.layer, workers, facts=facts, infra_dir=args.suites.resolve())
                times.append(time.monotonic() - t0)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            t = report.totals
            checks = t["passed"] + t["failed"] + t["skipped"]
        results[name] = statistics.median(times)
        print(f"{name:<11} {results[name]:6.2f} s  ({checks} checks, runs: {', '.join(f'{x:.2f}' for x in times)})",
              flush=True)
    base = results["serial"]
    print("ratios to serial: " + ", ".join(f"{k} {v / base:.2f}x" for k, v in results.items()))
    print(f"load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
