"""Validate rendered Kubernetes objects with kubernetes-validate (strict) for the lab's minor.

`validate_documents(docs, "1.37")` returns one line per problem (empty when
all documents validate): unknown fields, wrong types, kinds the API of that
minor does not serve. Used by the render tests and by the addons helper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def _describe(doc: Any, index: int) -> str:
    if isinstance(doc, dict):
        meta = doc.get("metadata") or {}
        ns = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
        return f"{doc.get('kind')} {ns}{meta.get('name')}"
    return f"document {index}"


def validate_documents(docs: list[Any], k8s_minor: str) -> list[str]:
    """Problems found in `docs` against the strict schemas of Kubernetes `k8s_minor` ("1.37")."""
    import kubernetes_validate as kv

    version = f"{k8s_minor}.0" if k8s_minor.count(".") == 1 else k8s_minor
    problems: list[str] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        what = _describe(doc, i)
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            problems.append(f"{what}: not a Kubernetes object (needs apiVersion and kind)")
            continue
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError as exc:
            problems.append(f"{what}: {exc.message}")
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{what}: {where + ': ' if where else ''}{exc.message}")
    return problems


def load_documents(path: Path) -> list[Any]:
    """Every non-empty YAML document of a file."""
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]
