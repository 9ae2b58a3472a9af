"""README.md's lab.yml reference is generated from labctl/model/config.py (`python3 -m labctl.model.docs_ref`):
it cannot drift."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from labctl.model import docs_ref
from labctl.model.config import Lab


def test_readme_reference_is_what_the_model_generates():
    text = docs_ref.README.read_text(encoding="utf-8")
    assert docs_ref.splice(text, docs_ref.render()) == text, (
        "README.md's lab.yml reference differs from labctl/model/config.py: run `python3 -m labctl.model.docs_ref`")


def _keys(model: type[BaseModel] = Lab, prefix: str = ""):
    """Every key lab.yml can hold, walked independently of the generator."""
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _keys(ann, f"{prefix}{name}.")
        elif typing.get_origin(ann) is list:
            yield f"{prefix}{name}[]"
            yield from _keys(typing.get_args(ann)[0], f"{prefix}{name}[].")
        else:
            yield f"{prefix}{name}"


def test_every_key_of_the_model_has_a_row_with_a_description():
    rows = list(docs_ref.rows())
    assert [r[0].strip("`") for r in rows] == list(_keys())
    assert all(r[3] for r in rows)
    by_key = {r[0].strip("`"): r for r in rows}
    assert by_key["nodes[].cpus"][1:3] == ("1–64", "`2`")
    assert by_key["kubernetes.version"][2].startswith('`"1.')  # quoted: YAML would read 1.37 as a number
    assert by_key["provider"][1:3] == ("`vagrant`, `docker`, `existing`", "(required)")
    assert by_key["kubernetes.bundle"][2] == "—"


def test_check_mode_reports_drift_and_the_generator_fixes_it(tmp_path: Path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{docs_ref.BEGIN}\n| stale | table |\n{docs_ref.END}\n\nafter\n")
    assert docs_ref.main(["--check", "--readme", str(readme)]) == 1
    assert "python3 -m labctl.model.docs_ref" in capsys.readouterr().err
    assert docs_ref.main(["--readme", str(readme)]) == 0
    assert docs_ref.main(["--check", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith("\n\nafter\n") and "| `nodes[].ip` |" in text


def test_missing_markers_are_an_error():
    with pytest.raises(ValueError, match="lacks the markers"):
        docs_ref.splice("no markers here", docs_ref.render())
