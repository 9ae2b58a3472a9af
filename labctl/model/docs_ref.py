"""The lab.yml reference of README.md, generated from the model (labctl/model/config.py).

Every key of `Lab` becomes a row: its path (`nodes[].ip`), its type and allowed
values (from the annotation and its constraints), its default and its
description (`Field(description=...)`). The table replaces what stands between
BEGIN and END in README.md:

    python3 -m labctl.model.docs_ref            # rewrite README.md's reference
    python3 -m labctl.model.docs_ref --check    # exit 1 when README.md differs (a unit test does the same)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from labctl.model.config import Lab
from labctl.state import REPO_ROOT

README = REPO_ROOT / "README.md"
BEGIN = "<!-- lab.yml reference: generated from labctl/model/config.py by `python3 -m labctl.model.docs_ref`; do not edit -->"
END = "<!-- end of the generated lab.yml reference -->"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _strip(annotation: Any) -> Any:
    """The annotation without `| None` and without Annotated's metadata."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _strip(typing.get_args(annotation)[0])
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _strip(args[0]) if len(args) == 1 else annotation
    return annotation


def _bounds(info: FieldInfo) -> tuple[Any, Any]:
    """(ge, le) of Field(ge=..., le=...), None where not set."""
    low = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in info.metadata if hasattr(m, "le")), None)
    return low, high


def type_text(info: FieldInfo) -> str:
    """What a key takes: the allowed values of a Literal, a range, or the kind of value."""
    ann = _strip(info.annotation)
    if typing.get_origin(ann) is Literal:
        return ", ".join(f"`{v}`" for v in typing.get_args(ann))
    if typing.get_origin(ann) is list:
        item = _model_of(typing.get_args(ann)[0])
        least = next((m.min_length for m in info.metadata if hasattr(m, "min_length")), 0)
        return f"list{f' of {item.__name__.lower()}s' if item else ''}{f', at least {least}' if least else ''}"
    if ann is bool:
        return "bool"
    if ann is int:
        low, high = _bounds(info)
        return f"{low}–{high}" if low is not None and high is not None else "integer"
    if ann is ipaddress.IPv4Address:
        return "IPv4 address"
    if ann is ipaddress.IPv4Network:
        return "IPv4 network"
    if ann is str:
        return "string"
    raise TypeError(f"docs_ref: no text for the type {ann!r}; teach type_text() about it")


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str) and yaml.safe_load(value) != value:  # "1.37" would read as a number: quoted
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def rows(model: type[BaseModel] = Lab, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, description) of every key under `model`, in the model's order."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = _strip(info.annotation)
        nested = _model_of(ann)
        if nested is not None:  # a section: its keys are the rows
            yield from rows(nested, f"{path}.")
            continue
        item = _model_of(typing.get_args(ann)[0]) if typing.get_origin(ann) is list else None
        if not info.description:
            raise ValueError(f"docs_ref: {path} has no Field(description=...) in labctl/model/config.py")
        yield f"`{path}{'[]' if item else ''}`", type_text(info), default_text(info), info.description
        if item is not None:
            yield from rows(item, f"{path}[].")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """The generated Markdown between the markers (markers included)."""
    lines = [BEGIN, "| key | type / allowed | default | meaning |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows()]
    return "\n".join(lines + [END])


def splice(readme: str, generated: str) -> str:
    """README text with the part between the markers replaced by `generated`."""
    try:
        start = readme.index(BEGIN)
        end = readme.index(END, start) + len(END)
    except ValueError:
        raise ValueError(f"README.md lacks the markers {BEGIN!r} ... {END!r}") from None
    return readme[:start] + generated + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labctl.model.docs_ref", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md differs; change nothing")
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = splice(text, render())
    if new == text:
        return 0
    if args.check:
        print(f"{args.readme}: the lab.yml reference differs from labctl/model/config.py; "
              "run `python3 -m labctl.model.docs_ref`", file=sys.stderr)
        return 1
    args.readme.write_text(new, encoding="utf-8")
    print(f"{args.readme}: lab.yml reference regenerated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
