#!/usr/bin/env python3
"""bench/vm.py (also `bench/run --vm`): the VM lab's figures -- labctl's box build (cold and cached),
`labctl up` of three libvirt VMs, the first `provision --until nfs`, a no-op re-provision, verify of
the node layers, `labctl down`. Prints a table and writes docs/benchmarks-vm.md. Asserts nothing.

    bench/vm.py                 # box cached when present (its cold build time is taken from --cold)
    bench/vm.py --cold          # rebuild the box first (minutes)
    bench/vm.py --keep          # leave the lab up

Lab: bench-vm on 192.168.63.0/24 (the shipped lab.yml's topology, LABCTL_VM_PROVIDER=libvirt),
removed at the end (also on failure). Where KVM is not usable here, every figure is under QEMU
emulation (TCG): labctl up says so and the doc's title does too.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
NAME, CIDR = "bench-vm", "192.168.63.0/24"
LAYERS = "host,runtime,registry,storage"


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def labctl(lab: Path | None, *args: str, timeout: float = 3600) -> tuple[subprocess.CompletedProcess[str], float]:
    argv = [sys.executable, "-m", "labctl", *args]
    if lab is not None:
        argv[4:4] = ["--lab", str(lab)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "LABCTL_VM_PROVIDER": "libvirt"}
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                         cwd=lab.parent if lab else REPO)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"labctl {' '.join(args)} failed (exit {res.returncode}):\n{res.stdout[-3000:]}\n"
                         f"{res.stderr[-3000:]}")
    return res, took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold", action="store_true", help="rebuild the box (a cold build) before the lab")
    ap.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks-vm.md")
    args = ap.parse_args()
    rows: list[tuple[str, float, str]] = []
    emulated = ""
    with tempfile.TemporaryDirectory(prefix="labctl-bench-vm-") as tmp:
        lab = Path(tmp) / "lab.yml"
        data = yaml.safe_load((REPO / "lab.yml").read_text())
        data["name"], data["network"]["cidr"] = NAME, CIDR
        for n in data["nodes"]:
            n["ip"] = CIDR.rsplit(".", 1)[0] + "." + n["ip"].rsplit(".", 1)[1]
        lab.write_text(yaml.safe_dump(data, sort_keys=False))
        if args.cold:
            log("box build --rebuild")
            _res, took = labctl(None, "box", "build", "--rebuild")
            rows.append(("box build (cold: mmdebstrap, mkfs, qcow2, tar.gz, vagrant box add)", took, ""))
        log("box build (cached)")
        res, took = labctl(None, "box", "build")
        rows.append(("box build (cached: a no-op)", took, res.stdout.strip().splitlines()[-1][:60]))
        try:
            log("up")
            res, took = labctl(lab, "up")
            if "software emulation" in res.stderr:
                emulated = "under QEMU emulation (TCG)"
            rows.append(("labctl up (3 VMs)", took, emulated or "KVM"))
            log("provision --until nfs (first)")
            res, took = labctl(lab, "provision", "--until", "nfs", "--no-progress")
            m = re.search(r"(\d+) task-hosts, changed=(\d+)", res.stdout + res.stderr)
            rows.append(("first provision --until nfs", took, f"{m.group(1)} task-hosts, changed={m.group(2)}" if m else ""))
            log("provision --until nfs (no-op)")
            res, took = labctl(lab, "provision", "--until", "nfs", "--no-progress")
            m = re.search(r"(\d+) task-hosts, changed=(\d+)", res.stdout + res.stderr)
            rows.append(("no-op re-provision --until nfs", took, f"{m.group(1)} task-hosts, changed={m.group(2)}" if m else ""))
            log("verify")
            res, took = labctl(lab, "verify", "--layer", LAYERS)
            rows.append((f"verify --layer {LAYERS}", took, ""))
        finally:
            if not args.keep:
                log("down")
                t0 = time.monotonic()
                subprocess.run([sys.executable, "-m", "labctl", "down", "--yes", "--lab", str(lab)], timeout=1800,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True)
                rows.append(("labctl down", time.monotonic() - t0, ""))
    title = f"VM lab benchmarks ({emulated or 'KVM'})"
    lines = [f"# {title}", "",
             f"Written by `bench/run --vm` (bench/vm.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
             f"{platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end. "
             "Lab: the shipped lab.yml's topology (master 2 vCPU/2560 MiB, node 2/2048, registry 1/1024), libvirt.",
             "", "| step | seconds | note |", "|---|---:|---|"]
    lines += [f"| {s} | {t:.0f} | {n} |" for s, t, n in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
