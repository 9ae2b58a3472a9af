"""Shared fixtures of the testinfra suites that `labctl verify` runs against a lab.

`labctl verify` runs pytest here with `--ansible-inventory inventory/<lab>/hosts.yml`
and LABCTL_INVENTORY pointing at the same file. Values a check needs come from the
generated group_vars (the testinfra Ansible backend sees inventory variables only).

A node's state is read once (_snapshot.py): every collected module's `snapshot_reads(node)`
on every node, in one ssh round trip per node, all nodes at once; `snap` is the snapshot
of the test's testinfra host, `snapshots[name]` that of a node by name.
"""

from __future__ import annotations

import os

import pytest
from _lab import group_vars, node_host
from _snapshot import Host, describe, take_all

SNAPSHOT_LOG: list[str] = []


@pytest.fixture(scope="session")
def lab_vars() -> dict:
    """The lab_* variables of the generated inventory."""
    if not os.environ.get("LABCTL_INVENTORY"):
        pytest.fail("LABCTL_INVENTORY is not set: run these suites through `labctl verify`")
    return group_vars()


@pytest.fixture(scope="session")
def lab_nodes(lab_vars: dict) -> list[dict]:
    return lab_vars["lab_nodes"]


@pytest.fixture(scope="session")
def snapshots(request: pytest.FixtureRequest, lab_nodes: list[dict]) -> dict[str, Host]:
    """node name -> its snapshot: the reads of every collected module, taken when the first check needs them."""
    modules = sorted({item.module for item in request.session.items if getattr(item, "module", None)},
                     key=lambda m: m.__name__)
    wanted = {n["name"]: [r for m in modules if hasattr(m, "snapshot_reads") for r in m.snapshot_reads(n)]
              for n in lab_nodes}
    snaps = take_all({name: (node_host(name), reads) for name, reads in wanted.items() if reads})
    yield snaps
    SNAPSHOT_LOG.extend(describe(snaps))


@pytest.fixture
def snap(host, snapshots: dict[str, Host]):
    """The snapshot of this test's node (testinfra's `host`); the live host where nothing was prefetched."""
    return snapshots.get(getattr(host.backend, "host", None), host)


def pytest_terminal_summary(terminalreporter) -> None:
    if SNAPSHOT_LOG:
        terminalreporter.write_sep("-", "node snapshots (tests/infra/_snapshot.py)")
        for line in SNAPSHOT_LOG:
            terminalreporter.write_line(line)
