"""Property tests of `labctl check` on mutated valid labs (issue #13).

Valid labs are mutated -- a value replaced by one of another type or an edge value, a key
deleted, a node added or removed, a key written twice -- and then:
- `labctl check` (the CLI's own entry point, in this process) exits 0 or 2 and raises nothing;
  when it refuses, every finding names a field path;
- a lab it accepts renders with `labctl render` without an error (a few labs: a render is seconds).

Deterministic (derandomize, no example database), so CI sees the same labs every run.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from labctl import cli
from labctl.model.config import Lab, LabError, load_lab
from tests.unit.conftest import base_lab, lab_one_plus_three

CHECK_EXAMPLES = 300
RENDER_EXAMPLES = 5


def _existing() -> dict:
    d = base_lab()
    d["name"] = "real-lab"
    d["provider"] = "existing"
    for n in d["nodes"]:
        n.update(ssh_host=n["ip"], ssh_user="admin")
    return d


def _no_registry() -> dict:
    d = base_lab()
    d["nodes"] = d["nodes"][:2]
    d["kubernetes"]["mirror_images"] = False
    return d


BASES = {"course": base_lab, "one-plus-three": lab_one_plus_three, "existing": _existing, "no-registry": _no_registry}


def _model_paths(model: type[BaseModel], prefix: tuple = ()) -> list[tuple]:
    """Every field the model knows, as a path (nodes[] fields under index 0): unset ones are mutated too."""
    out: list[tuple] = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        out.append(path)
        ann = field.annotation
        args = typing.get_args(ann)
        if typing.get_origin(ann) is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            out += _model_paths(args[0], (*path, 0))
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _model_paths(ann, path)
    return out


def _data_paths(d: object, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out += _data_paths(v, (*prefix, k))
    return out


MODEL_PATHS = _model_paths(Lab)

# Values a user might write: valid ones of other fields, edge ports, empty and odd strings, other types.
WORDS = ["", " ", "none", "docker", "existing", "vagrant", "control-plane", "worker", "registry", "ipvs", "nftables",
         "traefik", "ingress-nginx", "headlamp", "kubernetes-dashboard", "kube-prometheus-stack", "flannel", "ports",
         "disabled", "permissive", "debian12", "ubuntu2404", "rocky9", "1.31", "1.35", "1.37", "1.37.0", "1.40", "2.0",
         "latest", "10.244.0.0/16", "10.254.0.0/16", "192.168.56.0/24", "192.168.56.50", "192.168.56.1", "::1",
         "cluster.local", "labctl", "a:b", "root", "/nonexistent", "/tmp", "~", "pkgs", "node", "master", "Ünïcode",
         "x" * 70]
PORTS = [0, 1, 22, 111, 2049, 2222, 2380, 5000, 6443, 9100, 10250, 10256, 29999, 30000, 30080, 32767, 32768, 65535,
         65536, -1]
SCALARS = st.one_of(
    st.sampled_from(WORDS), st.sampled_from(PORTS), st.none(), st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40), st.floats(allow_nan=False, width=32), st.text(max_size=8),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(WORDS), SCALARS, max_size=2))


def _parent(d: dict, path: tuple):
    cur: object = d
    for k in path[:-1]:
        if isinstance(cur, dict):
            cur = cur.setdefault(k, {} if not isinstance(k, int) else [])
        elif isinstance(cur, list) and isinstance(k, int) and k < len(cur):
            cur = cur[k]
        else:
            return None
    return cur


def _apply(d: dict, op: tuple) -> dict:
    kind, path, value = op
    parent = _parent(d, path)
    key = path[-1] if path else None
    if kind == "set" and isinstance(parent, dict) and not isinstance(key, int):
        parent[key] = value
    elif kind == "set" and isinstance(parent, list) and isinstance(key, int) and key < len(parent):
        parent[key] = value
    elif kind == "delete" and isinstance(parent, dict):
        parent.pop(key, None)
    elif kind == "delete" and isinstance(parent, list) and isinstance(key, int) and key < len(parent):
        parent.pop(key)
    elif kind == "add-node" and isinstance(d.get("nodes"), list) and d["nodes"]:
        copied = d["nodes"][value % len(d["nodes"])]
        node = dict(copied) if isinstance(copied, dict) else {}
        node.update(name=f"extra{value}", ip=f"192.168.56.{150 + value}")
        d["nodes"].append(node)
    return d


class _PlainDumper(yaml.SafeDumper):
    """No anchors for values a mutation shared between two places: each is written out as a user would."""

    def ignore_aliases(self, data) -> bool:
        return True


@st.composite
def mutated_lab(draw) -> str:
    """A valid lab's YAML text after 1-3 mutations (maybe one key written twice)."""
    d = BASES[draw(st.sampled_from(sorted(BASES)))]()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["set", "set", "set", "delete", "add-node"]))
        paths = MODEL_PATHS + _data_paths(d) if kind == "set" else _data_paths(d)
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        value = draw(VALUES) if kind == "set" else draw(st.integers(min_value=0, max_value=20))
        d = _apply(d, (kind, path, value))
    text = yaml.dump(d, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)
    if draw(st.integers(min_value=0, max_value=4)) == 0:  # a key written twice
        lines = text.splitlines(keepends=True)
        keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*(- )?[A-Za-z_]+:", line)]
        if keyed:
            i = draw(st.sampled_from(keyed))
            if lines[i].rstrip().endswith(":"):  # `key:` opens a block: `key: null` before it
                lines.insert(i, lines[i].rstrip() + " null\n")
            else:  # `key: value` (or `- key: value`, a list item's first key): the same key after it
                lines.insert(i + 1, re.sub(r"^(\s*)- ", r"\1  ", lines[i]))
            text = "".join(lines)
    return text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


_counter = itertools.count()


def _check(workdir: Path, text: str) -> tuple[int, Lab | None, Path]:
    """Run `labctl check` as the CLI does; return its exit code, the accepted lab and the file."""
    lab_file = workdir / f"lab-{next(_counter)}.yml"
    lab_file.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["check", "--lab", str(lab_file)])  # anything but labctl's own error propagates
    assert rc in (0, 2), out.getvalue() + err.getvalue()
    if rc == 0:
        return rc, load_lab(lab_file), lab_file
    with pytest.raises(LabError) as exc:
        load_lab(lab_file)
    findings = exc.value.findings
    assert findings, err.getvalue()
    for f in findings:
        assert f.level == "error" and f.path, f"a finding without a field path: {f}\n{text}"
        assert f"{f.path}: " in err.getvalue()
    return rc, None, lab_file


@settings(max_examples=CHECK_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated_lab())
def test_check_refuses_with_a_field_path_or_accepts(workdir: Path, text: str):
    _check(workdir, text)


@settings(max_examples=RENDER_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=mutated_lab())
def test_every_accepted_lab_renders(workdir: Path, text: str):
    rc, lab, lab_file = _check(workdir, text)
    if lab is None:
        from hypothesis import reject

        reject()
    out_dir = workdir / f"{lab_file.stem}-rendered"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["render", "--lab", str(lab_file), "--out", str(out_dir)])
    assert rc == 0, f"{text}\n{out.getvalue()}\n{err.getvalue()}"
    assert (out_dir / "inventory" / "hosts.yml").is_file()
