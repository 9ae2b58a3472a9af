"""Shared fixtures of the testinfra suites that `labctl verify` runs against a lab.

`labctl verify` runs pytest here with `--ansible-inventory inventory/<lab>/hosts.yml`
and LABCTL_INVENTORY pointing at the same file. Values a check needs come from the
generated group_vars (the testinfra Ansible backend sees inventory variables only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml


def _inventory() -> Path | None:
    path = os.environ.get("LABCTL_INVENTORY")
    return Path(path) if path else None


def load_group_vars(hosts_file: Path) -> dict:
    """group_vars/all.yml beside the generated hosts.yml."""
    return yaml.safe_load((hosts_file.parent / "group_vars" / "all.yml").read_text()) or {}


@pytest.fixture(scope="session")
def lab_vars() -> dict:
    """The lab_* variables of the generated inventory."""
    inv = _inventory()
    if inv is None:
        pytest.fail("LABCTL_INVENTORY is not set: run these suites through `labctl verify`")
    return load_group_vars(inv)


@pytest.fixture(scope="session")
def lab_nodes(lab_vars: dict) -> list[dict]:
    return lab_vars["lab_nodes"]
