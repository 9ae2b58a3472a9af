"""Decisions of the addon checks (tests/infra/test_addons.py), on the APIs' documented JSON.

Pure functions: each takes what an API returned and says what is wrong, so the checks
themselves stay one line and these are unit-tested without a cluster.
"""

from __future__ import annotations

import re
from typing import Any


def pods_not_ready(pod_list: dict[str, Any]) -> list[str]:
    """Pods of a `kubectl get pods -o json` list that are not Ready (finished Job pods excepted)."""
    out = []
    for pod in pod_list.get("items") or []:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if status.get("phase") == "Succeeded":
            continue
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if ready.get("status") == "True":
            continue
        waiting = [cs.get("state", {}).get("waiting", {}).get("reason") for cs in status.get("containerStatuses") or []]
        why = ", ".join(w for w in waiting if w) or ready.get("reason") or status.get("reason") or "not ready"
        out.append(f"{meta.get('namespace')}/{meta.get('name')}: {status.get('phase', '?')} ({why})")
    return out


def nodes_without_metrics(node_metrics: dict[str, Any], nodes: list[str]) -> list[str]:
    """Nodes absent from /apis/metrics.k8s.io/v1beta1/nodes, or reported without cpu and memory."""
    have = {}
    for item in node_metrics.get("items") or []:
        usage = item.get("usage") or {}
        have[(item.get("metadata") or {}).get("name")] = "cpu" in usage and "memory" in usage
    return [n for n in nodes if not have.get(n)]


def targets_down(targets: dict[str, Any]) -> list[str]:
    """Active targets of Prometheus' /api/v1/targets whose health is not "up", with their last error."""
    if targets.get("status") != "success":
        return [f"the targets API answered status {targets.get('status')!r}: {targets.get('error', '')}".strip()]
    out = []
    for t in (targets.get("data") or {}).get("activeTargets") or []:
        if t.get("health") == "up":
            continue
        labels = t.get("labels") or {}
        out.append(f"{labels.get('job', t.get('scrapePool', '?'))} {labels.get('instance', t.get('scrapeUrl', '?'))}: "
                   f"{t.get('health')} ({t.get('lastError') or 'no error reported'})")
    return out


def token_review_user(review: dict[str, Any]) -> str | None:
    """The username a TokenReview authenticated, or None when the token was refused."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        return None
    return (status.get("user") or {}).get("username")


def grafana_healthy(health: dict[str, Any]) -> bool:
    """Grafana's /api/health: {"database": "ok", "version": ...}."""
    return health.get("database") == "ok"


def grafana_login_is_admin(user: dict[str, Any]) -> bool:
    """Grafana's /api/user for the basic-auth user: the server admin named admin."""
    return user.get("login") == "admin" and bool(user.get("isGrafanaAdmin"))


WHOAMI_HOST = re.compile(r"^Hostname:\s*(\S+)\s*$", re.MULTILINE)


def whoami_pod(body: str) -> str | None:
    """The pod name in traefik/whoami's answer ("Hostname: whoami-5d8f...")."""
    m = WHOAMI_HOST.search(body)
    return m.group(1) if m else None
