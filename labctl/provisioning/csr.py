"""The kubelet serving CSR decision, for labctl and its tests.

The implementation lives in roles/metrics_server/files/kubelet_csr.py (the roles
ship that file to the control-plane node, where only the standard library is
available, and roles/csr_approver mounts it into the in-cluster approver's pod);
this module loads that same file, so there is one implementation.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from labctl.state import REPO_ROOT

IMPLEMENTATION = REPO_ROOT / "roles" / "metrics_server" / "files" / "kubelet_csr.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("labctl._kubelet_csr", IMPLEMENTATION)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with labctl
        raise ImportError(f"cannot load {IMPLEMENTATION}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_impl = _load()

SIGNER: str = _impl.SIGNER
CsrError = _impl.CsrError
decide = _impl.decide
decide_all = _impl.decide_all
parse_request = _impl.parse_request
# the in-cluster approver (--serve)
Api = _impl.Api
ApiError = _impl.ApiError
CONDITIONS: dict[str, tuple[str, str]] = _impl.CONDITIONS
backoff = _impl.backoff
plan = _impl.plan
read_nodes = _impl.read_nodes
run_pass = _impl.run_pass
serve = _impl.serve
with_condition = _impl.with_condition

__all__ = ["SIGNER", "CsrError", "decide", "decide_all", "parse_request", "IMPLEMENTATION",
           "Api", "ApiError", "CONDITIONS", "backoff", "plan", "read_nodes", "run_pass", "serve", "with_condition"]
