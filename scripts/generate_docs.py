"""Write the parts of docs/ that come from the code (`make docs`); `--check` only says whether they drifted.

- docs/configuration.md, block `settings`: every key of the settings model (src/dockyard/config), with its
  type, default, variables and description (the model's `Field(description=...)` and section docstrings);
- docs/configuration.md, block `registry2`: how each registry:2 key is treated (config/registry2.py);
- docs/architecture.md, block `layers`: the import-linter contracts in pyproject.toml, each package
  described by its own docstring.

A block sits between `<!-- BEGIN generated:NAME ... -->` and `<!-- END generated:NAME -->`; everything
outside the markers is hand-written and left alone. tests/unit/docs fails when a block is out of date.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # a checkout without `pip install -e .` works too

from dockyard.config import loader, registry2  # noqa: E402
from dockyard.config.settings import Settings  # noqa: E402

KeyPath = tuple[str, ...]


# --- the blocks ------------------------------------------------------------------------------------------
def settings_reference() -> str:
    """One table per top-level section, each led by its docstring."""
    top = {name: field for name, field in Settings.model_fields.items() if _sub_model(field) is None}
    parts = ["### Top level", _table(_rows(top, ()))]
    for name, field in Settings.model_fields.items():
        section = _sub_model(field)
        if section is None:
            continue
        parts.append(f"### `{name}`")
        if _docstring(section):
            parts.append(_paragraphs(_docstring(section)))
        parts.append(_table(_rows(section.model_fields, (name,))))
    return "\n\n".join(parts)


def registry2_reference() -> str:
    """registry:2's keys: applied, honoured with one value, accepted with a warning, refused."""
    return "\n\n".join(
        [
            "**Applied** (the same meaning as in registry:2; each is listed in its section above):",
            _applied_table(),
            "**Honoured when written with the value dockyard behaves by**, refused otherwise:",
            "| key | accepted values | why |\n|---|---|---|\n"
            + "\n".join(
                f"| `{_dotted(path)}` | {', '.join(_code(v) for v in values if v != '')} | {_cell(why)} |"
                for path, (values, why) in registry2.HONOURED.items()
            ),
            "**Accepted with a warning**: performance tuning of registry:2's own implementation, which "
            "dockyard does its own way (ignoring it opens nothing, loses nothing and changes no answer):",
            _grouped_table(registry2.TUNING),
            "**Refused** (dockyard does not start): running without any of these would change what the "
            "registry does: who gets in, which events are sent, what TLS allows.",
            _grouped_table(registry2.REFUSED),
        ]
    )


def layers_reference(pyproject: dict[str, Any], src: Path) -> str:
    """The layers contract as a diagram and a table of packages; then every other contract."""
    config = pyproject["tool"]["importlinter"]
    root = config["root_package"]
    contracts = config["contracts"]
    layers = [layer for contract in contracts if contract["type"] == "layers" for layer in contract["layers"]]

    def short(module: str) -> str:
        return module.removeprefix(f"{root}.")

    names = [[short(module.strip()) for module in layer.split("|")] for layer in layers]
    diagram = "\n".join(" | ".join(peers) for peers in names)
    rows = [
        f"| {number} | `{package}` | {_cell(_module_summary(src, root, package))} |"
        for number, peers in enumerate(names, 1)
        for package in peers
    ]
    others = [
        f"- **{contract['name']}**: {', '.join(f'`{short(m)}`' for m in contract['source_modules'])} "
        f"may not import {', '.join(f'`{short(m)}`' for m in contract['forbidden_modules'])}"
        + (" directly" if contract.get("allow_indirect_imports") else "")
        + "."
        for contract in contracts
        if contract["type"] == "forbidden"
    ]
    return "\n\n".join(
        [
            f"```text\n{diagram}\n```",
            "| layer | package | what it is (its docstring) |\n|---|---|---|\n" + "\n".join(rows),
            "`lint-imports` also checks:",
            "\n".join(others),
        ]
    )


# --- the settings table ------------------------------------------------------------------------------------
ITEM = "[]"  # a path step into each item of a list of sections: `notifications.endpoints[].url`
Row = tuple[KeyPath, str, str, str, str]  # key, type, default, variables, description


def _rows(fields: dict[str, FieldInfo], parent: KeyPath) -> Iterator[Row]:
    for name, field in fields.items():
        path = (*parent, name)
        section = _sub_model(field)
        if section is None:
            yield path, _type_text(field), _default_text(field), _variables(path), field.description or ""
            item = _list_item_model(field)
            if item is not None:  # each item's keys: set in the file, or with the whole list's variable
                yield from _rows(item.model_fields, (*path, ITEM))
            continue
        if _docstring(section):  # a section that means something of its own (selects a driver, a mode)
            default = "unset" if field.default is None else ""
            yield path, "section", default, "", _docstring(section)
        yield from _rows(section.model_fields, path)


def _table(rows: Iterator[Row]) -> str:
    lines = ["| key | type | default | variables | description |", "|---|---|---|---|---|"]
    for path, type_text, default, variables, description in rows:
        lines.append(f"| `{_dotted(path)}` | {type_text} | {default} | {variables} | {_cell(description)} |")
    return "\n".join(lines)


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _type_text(field: FieldInfo) -> str:
    text = str(_extra(field).get("format") or _annotation_text(field.annotation))
    bounds = {type(item).__name__.lower(): item for item in field.metadata}  # annotated_types.Ge, ...
    if "ge" in bounds and "le" in bounds:
        return f"{text}, {bounds['ge'].ge} to {bounds['le'].le}"
    for name, words in (("ge", "at least"), ("gt", "above"), ("le", "at most"), ("lt", "below")):
        if name in bounds:
            return f"{text}, {words} {getattr(bounds[name], name)}"
    return text


_SIMPLE_TYPES = {bool: "bool", int: "integer", float: "number", str: "string", Path: "path"}


def _annotation_text(annotation: Any) -> str:
    members = [member for member in _members(annotation) if member is not type(None)]
    if len(members) > 1:
        texts = [_annotation_text(member) for member in members]
        return ", ".join(texts[:-1]) + " or " + texts[-1]
    annotation = members[0]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(_code(arg) for arg in args)
    if origin is list:
        return f"list of {_annotation_text(args[0])}s"
    if origin is dict:
        return f"map of {_annotation_text(args[0])} to {_annotation_text(args[1])}"
    return _SIMPLE_TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default_text(field: FieldInfo) -> str:
    shown = _extra(field).get("shown_default")
    if shown:
        return str(shown)
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if value == [] or value == {}:
        return "empty"
    return _code(value)


def _variables(path: KeyPath) -> str:
    if ITEM in path:
        return ""
    names = ["DOCKYARD_" + "_".join(path).upper()]
    registry2_path = _registry2_name(path)
    if registry2_path is not None:
        names.append("REGISTRY_" + "_".join(registry2_path).upper())
    return "<br>".join(f"`{name}`" for name in names)


def _registry2_name(path: KeyPath) -> KeyPath | None:
    """The key path registry:2 calls `path` by, if registry:2 has it (config/registry2.py's APPLIED)."""
    renamed_from = {new: old for old, new in loader.RENAMED.items()}
    for candidate in (path, renamed_from.get(path)):
        if candidate is not None and any(candidate[: len(key)] == key for key in registry2.APPLIED):
            return candidate
    return None


# --- the registry:2 tables -----------------------------------------------------------------------------
def _applied_table() -> str:
    by_section: dict[str, list[str]] = {}
    for key in registry2.APPLIED:
        target = loader.RENAMED.get(key, key)
        name = _dotted(key[1:] if key[0] == target[0] else key)
        if _is_section(target) and _model_at(target).model_fields:
            name += ".*"
        renamed = f" (as `{_dotted(target)}`)" if key in loader.RENAMED else ""
        by_section.setdefault(target[0], []).append(f"`{name}`{renamed}")
    rows = [f"| `{section}` | {', '.join(keys)} |" for section, keys in by_section.items()]
    return "| section | keys |\n|---|---|\n" + "\n".join(rows)


def _grouped_table(reasons: dict[KeyPath, str]) -> str:
    """Keys that share a reason in one row, in the order the table in registry2.py has them."""
    grouped: dict[str, list[KeyPath]] = {}
    for path, reason in reasons.items():
        grouped.setdefault(reason, []).append(path)
    rows = [
        f"| {', '.join(f'`{_dotted(path)}`' for path in paths)} | {_cell(reason)} |"
        for reason, paths in grouped.items()
    ]
    return "| keys | why |\n|---|---|\n" + "\n".join(rows)


# --- helpers ----------------------------------------------------------------------------------------------
def _members(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _sub_model(field: FieldInfo) -> type[BaseModel] | None:
    for member in _members(field.annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _list_item_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a list's items (`notifications.endpoints`), if they are sections."""
    if typing.get_origin(field.annotation) is list:
        (item,) = typing.get_args(field.annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def _model_at(path: KeyPath) -> type[BaseModel]:
    model: type[BaseModel] = Settings
    for key in path:
        section = _sub_model(model.model_fields[key])
        assert section is not None, f"{_dotted(path)} is not a section"
        model = section
    return model


def _is_section(path: KeyPath) -> bool:
    try:
        _model_at(path)
    except (AssertionError, KeyError):
        return False
    return True


def _docstring(model: type[BaseModel]) -> str:
    own = model.__dict__.get("__doc__")  # not one inherited from the base section
    return inspect.cleandoc(own) if own else ""


def _paragraphs(text: str) -> str:
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in text.split("\n\n"))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"`{value}`"


def _dotted(path: KeyPath) -> str:
    return ".".join(path).replace(f".{ITEM}", ITEM)


def _module_summary(src: Path, root: str, package: str) -> str:
    """The first paragraph of a package's (or module's) docstring."""
    base = src / root / Path(*package.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            docstring = ast.get_docstring(ast.parse(candidate.read_text()))
            return " ".join(docstring.split("\n\n")[0].split()) if docstring else "(no docstring)"
    return "(not found)"


# --- the files --------------------------------------------------------------------------------------------
def _blocks(root: Path) -> dict[Path, dict[str, Callable[[], str]]]:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    return {
        root / "docs" / "configuration.md": {
            "settings": settings_reference,
            "registry2": registry2_reference,
        },
        root / "docs" / "architecture.md": {"layers": lambda: layers_reference(pyproject, root / "src")},
    }


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with the block called `name` holding `body`; ValueError when its markers are missing."""
    quoted = re.escape(name)
    pattern = re.compile(
        rf"(<!-- BEGIN generated:{quoted}\b[^>]*-->)\n.*?(<!-- END generated:{quoted} -->)", re.DOTALL
    )
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"expected one block of <!-- BEGIN generated:{name} --> ... <!-- END ... -->")
    return pattern.sub(lambda match: f"{match.group(1)}\n\n{body}\n\n{match.group(2)}", text)


def generate(root: Path = ROOT) -> dict[Path, str]:
    """Each generated file's text as it should be."""
    texts = {}
    for path, blocks in _blocks(root).items():
        text = path.read_text()
        for name, render in blocks.items():
            text = replace_block(text, name, render())
        texts[path] = text
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate().items():
        if path.read_text() != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(text)
    for path in stale:
        print(f"{path}: {'out of date (run `make docs`)' if args.check else 'rewritten'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
