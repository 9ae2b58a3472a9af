"""Shared fixtures of the testinfra suites that `labctl verify` runs against a lab.

`labctl verify` runs pytest here with `--ansible-inventory inventory/<lab>/hosts.yml`
and LABCTL_INVENTORY pointing at the same file. Values a check needs come from the
generated group_vars (the testinfra Ansible backend sees inventory variables only).
"""

from __future__ import annotations

import os

import pytest
from _lab import group_vars


@pytest.fixture(scope="session")
def lab_vars() -> dict:
    """The lab_* variables of the generated inventory."""
    if not os.environ.get("LABCTL_INVENTORY"):
        pytest.fail("LABCTL_INVENTORY is not set: run these suites through `labctl verify`")
    return group_vars()


@pytest.fixture(scope="session")
def lab_nodes(lab_vars: dict) -> list[dict]:
    return lab_vars["lab_nodes"]
