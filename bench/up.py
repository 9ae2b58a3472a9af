#!/usr/bin/env python3
"""Measure the container lab's machine life cycle; prints numbers, asserts nothing.

    python bench/up.py [--no-build] [--repeat 3]

1. node image build (mmdebstrap/debootstrap + docker import), once, unless --no-build
2. `labctl up` of a 3-node container lab with the image cached
3. `labctl up` again on the running lab (median of --repeat runs)
4. `docker kill` of one node, then `labctl up` (repair)
5. `labctl down --yes`

The lab lives in a temporary directory, named bench-<random>, on LABCTL_BENCH_CIDR
(default 192.168.61.0/24), and is always removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def labctl(cwd: Path, *args: str, timeout: float = 900) -> float:
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "labctl", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    took = time.monotonic() - start
    if res.returncode != 0:
        print(f"labctl {' '.join(args)} failed (exit {res.returncode}):\n{res.stdout}{res.stderr}", file=sys.stderr)
        raise SystemExit(1)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true", help="do not time a fresh image build")
    ap.add_argument("--repeat", type=int, default=3, help="repeated `up` runs (default 3)")
    opts = ap.parse_args()

    from labctl.machines import image

    results: list[tuple[str, float]] = []
    if not opts.no_build:
        start = time.monotonic()
        tag, _ = image.build_image(rebuild=True)
        results.append((f"image build ({tag})", time.monotonic() - start))

    name = f"bench-{secrets.token_hex(2)}"
    cidr = os.environ.get("LABCTL_BENCH_CIDR", "192.168.61.0/24")
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        d = Path(tmp)
        labctl(d, "init", "--provider", "docker", "--name", name, "--cidr", cidr)
        try:
            results.append(("up, 3 nodes, cached image", labctl(d, "up")))
            again = [labctl(d, "up") for _ in range(max(1, opts.repeat))]
            results.append((f"up again, running lab (median of {len(again)})", statistics.median(again)))
            subprocess.run(["docker", "kill", f"{name}-node"], capture_output=True, timeout=60)
            results.append(("up after docker kill of one node", labctl(d, "up")))
        finally:
            down = labctl(d, "down", "--yes", timeout=300)
        results.append(("down", down))

    width = max(len(k) for k, _ in results)
    for k, v in results:
        print(f"{k:<{width}}  {v:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
