"""The lab under test, for the testinfra suites: its generated group_vars and its hosts.

Values a suite needs at collection time (to parametrize) cannot come from fixtures, so
the suites read them here. Outside `labctl verify` (LABCTL_INVENTORY unset) they are
empty and the suites still collect. What labctl derived from lab.yml (registry, mirroring,
images, enabled addons, versions, NFS export) is read through `facts()`, the same type
labctl wrote it from (labctl/model/facts.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import testinfra
import yaml

from labctl.model.facts import LabFacts


def group_vars() -> dict:
    """group_vars/all.yml beside the generated hosts.yml named by LABCTL_INVENTORY."""
    inv = os.environ.get("LABCTL_INVENTORY")
    gv = Path(inv).parent / "group_vars" / "all.yml" if inv else None
    return (yaml.safe_load(gv.read_text()) or {}) if gv and gv.exists() else {}


def facts() -> LabFacts:
    """The lab's derived facts, from the same group_vars."""
    return LabFacts.from_group_vars(group_vars())


def node_host(name: str):
    """A testinfra host for one node of the generated inventory (the ssh backend, its ControlPath)."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["LABCTL_INVENTORY"])
