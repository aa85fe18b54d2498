"""The parts of docs/ written from the code (scripts/generate_docs.py, `make docs`) match the code.

The configuration reference comes from the settings model's descriptions, the registry:2 tables from
config/registry2.py, the layer diagram from pyproject.toml's import contracts: a change to any of them
without `make docs` fails here, and so does a key documented with a variable that does not set it.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from dockyard.config import loader, registry2
from dockyard.config.settings import Settings

pytestmark = pytest.mark.db_independent  # no metadata database

ROOT = Path(__file__).resolve().parents[3]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_docs", ROOT / "scripts" / "generate_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_docs", module)
    spec.loader.exec_module(module)
    return module


generate_docs = _load_generator()


def _leaf_keys(model: type[BaseModel] = Settings, parent: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        if typing.get_origin(field.annotation) is list:
            yield (*parent, name)  # a list (of sections too) is set whole; its items have no variables
            continue
        members = typing.get_args(field.annotation) or (field.annotation,)
        section = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
        if section is None:
            yield (*parent, name)
        else:
            yield from _leaf_keys(section, (*parent, name))


def test_generated_docs_match_the_code() -> None:
    for path, expected in generate_docs.generate(ROOT).items():
        committed = path.read_text()
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    f"{path.name} (committed)",
                    f"{path.name} (from the code)",
                    n=0,
                )
            )[:40]
        )
        assert committed == expected, f"{path.relative_to(ROOT)} is out of date: run `make docs`\n{diff}"


def test_every_key_is_described() -> None:
    missing = []
    for key in _leaf_keys():
        field = generate_docs._model_at(key[:-1]).model_fields[key[-1]]
        if not (field.description or "").strip():
            missing.append(".".join(key))
    assert not missing, f"add Field(description=...) to: {', '.join(missing)}"


def test_every_documented_variable_sets_its_key() -> None:
    """The variables column names, for each key, the DOCKYARD_* variable (and registry:2's REGISTRY_* one,
    where registry:2 has the key) that the loader reads into that key."""
    for key in _leaf_keys():
        names = {"DOCKYARD_" + "_".join(key).upper(): key}
        registry2_key = generate_docs._registry2_name(key)
        if registry2_key is not None:
            names["REGISTRY_" + "_".join(registry2_key).upper()] = registry2_key
        for name, expected in names.items():
            warnings: list[str] = []
            origins = loader._apply_environment({}, {name: "1"}, warnings)
            assert origins == {expected: name}, f"{name} does not set {'.'.join(key)}: {warnings}"
            assert loader.RENAMED.get(expected, expected) == key


def test_registry2_applied_keys_are_dockyard_keys() -> None:
    """Each registry:2 key listed as applied is a key (or a section) of the settings model."""
    leaves = set(_leaf_keys())
    for key in registry2.APPLIED:
        target = loader.RENAMED.get(key, key)
        assert any(leaf[: len(target)] == target for leaf in leaves) or generate_docs._is_section(target), key


def test_a_block_is_replaced_between_its_markers_only() -> None:
    text = "intro\n<!-- BEGIN generated:x (note) -->\nold\n<!-- END generated:x -->\nafter\n"
    replaced = generate_docs.replace_block(text, "x", "new")
    assert replaced == "intro\n<!-- BEGIN generated:x (note) -->\n\nnew\n\n<!-- END generated:x -->\nafter\n"
    assert generate_docs.replace_block(replaced, "x", "new") == replaced
    with pytest.raises(ValueError, match="generated:y"):
        generate_docs.replace_block(text, "y", "new")
