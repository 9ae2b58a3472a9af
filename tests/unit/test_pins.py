"""labctl/model/pins.yml: the per-minor image pins are kubeadm's own constants.

KUBEADM_CONSTANTS is what cmd/kubeadm/app/constants/constants.go of each pinned k8s.io/kubernetes
patch says (read from the Go module cache, `go mod download -json k8s.io/kubernetes@<patch>`).
When that file is in the module cache, the test reads it again instead of trusting the table.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from labctl.model import versions

# minor: (patch, PauseVersion, CoreDNSVersion, etcd for the minor)
KUBEADM_CONSTANTS = {
    "1.31": ("1.31.14", "3.10", "v1.11.3", "3.5.24-0"),
    "1.32": ("1.32.13", "3.10", "v1.11.3", "3.5.24-0"),
    "1.33": ("1.33.13", "3.10", "v1.12.0", "3.5.24-0"),
    "1.34": ("1.34.4", "3.10.1", "v1.12.1", "3.6.5-0"),
    "1.35": ("1.35.4", "3.10.1", "v1.13.1", "3.6.6-0"),
    "1.36": ("1.36.3", "3.10.2", "v1.14.2", "3.6.8-0"),
    "1.37": ("1.37.2", "3.10.2", "v1.14.6", "3.7.0-0"),
}


def _modcache() -> Path | None:
    env = os.environ.get("GOMODCACHE")
    if env:
        return Path(env)
    try:
        out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def kubeadm_constants(text: str, minor: int, release: int | None = None) -> tuple[str, str, str]:
    """(pause, coredns, etcd for `minor`) from the constants.go of release 1.<release> (default: minor)."""
    pause = re.search(r'\bPauseVersion\s*=\s*"([^"]+)"', text).group(1)
    coredns = re.search(r'\bCoreDNSVersion\s*=\s*"([^"]+)"', text).group(1)
    default_etcd = re.search(r'\bDefaultEtcdVersion\s*=\s*"([^"]+)"', text).group(1)
    table = re.search(r"SupportedEtcdVersion\s*=\s*map\[uint8\]string\{(.*?)\n\s*\}", text, re.S).group(1)
    # entries are `34: "3.7.0-0",` or `uint8(getSkewedKubernetesVersion(-1).Minor()): "3.6.6-0",`;
    # skew 0 is the release's own minor
    etcd = {}
    for key, value in re.findall(r'^\s*(.+?):\s*"([^"]+)",?\s*$', table, re.M):
        skew = re.search(r"getSkewedKubernetesVersion\((-?\d+)\)", key)
        etcd[(release or minor) + int(skew.group(1)) if skew else int(key)] = value
    return pause, coredns, etcd.get(minor, default_etcd)


def test_every_minor_has_a_recorded_row():
    assert set(versions.KUBERNETES) == set(KUBEADM_CONSTANTS)


@pytest.mark.parametrize("minor", sorted(KUBEADM_CONSTANTS))
def test_pins_are_kubeadms_constants(minor: str):
    rel = versions.KUBERNETES[minor]
    assert (rel.patch, rel.pause, rel.coredns, rel.etcd) == KUBEADM_CONSTANTS[minor]


@pytest.mark.parametrize("minor", sorted(KUBEADM_CONSTANTS))
def test_recorded_table_matches_constants_go(minor: str):
    rel = versions.KUBERNETES[minor]
    cache = _modcache()
    path = (cache / f"k8s.io/kubernetes@v{rel.patch}/cmd/kubeadm/app/constants/constants.go") if cache else None
    if path is None or not path.exists():
        pytest.skip(f"k8s.io/kubernetes@v{rel.patch} is not in the Go module cache "
                    f"(go mod download k8s.io/kubernetes@v{rel.patch}); the recorded table was checked")
    got = kubeadm_constants(path.read_text(), int(minor.split(".")[1]))
    assert got == (rel.pause, rel.coredns, rel.etcd), f"{path} says {got}"


def test_the_old_stale_pins_would_fail():
    # 1.36/1.37 used to pin pause 3.10.1, CoreDNS v1.13.1, etcd 3.6.6-0 (kubeadm 1.35's values)
    assert KUBEADM_CONSTANTS["1.37"][1:] != ("3.10.1", "v1.13.1", "3.6.6-0")
    assert KUBEADM_CONSTANTS["1.36"][1:] != ("3.10.1", "v1.13.1", "3.6.6-0")


def test_parser_reads_a_skewed_table():
    text = '''
    DefaultEtcdVersion = "3.6.6-0"
    CoreDNSVersion = "v1.13.1"
    PauseVersion = "3.10.1"
    CurrentKubernetesVersion = getSkewedKubernetesVersion(0)
    SupportedEtcdVersion = map[uint8]string{
        uint8(getSkewedKubernetesVersion(-2).Minor()): "3.5.24-0",
        uint8(getSkewedKubernetesVersion(-1).Minor()): "3.6.6-0",
        uint8(getSkewedKubernetesVersion(0).Minor()):  "3.6.6-0",
    }
'''
    assert kubeadm_constants(text, 35) == ("3.10.1", "v1.13.1", "3.6.6-0")
    assert kubeadm_constants(text, 33, release=35) == ("3.10.1", "v1.13.1", "3.5.24-0")
