"""The public surface: ``bulkpull.__all__`` is complete, sorted as RUF022 wants, and shown as
``bulkpull.X``."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.metadata
import inspect
import re
import typing
from pathlib import Path
from types import ModuleType

import pytest

import bulkpull

INIT = Path(bulkpull.__file__)
# Every implementation module, packages' included (registry.client); __main__ is left out
# because importing it runs the command.
SUBMODULES = sorted(
    ".".join(path.relative_to(INIT.parent).with_suffix("").parts)
    for path in INIT.parent.rglob("*.py")
    if path.name not in {"__init__.py", "__main__.py"}
)


def ruf022_key(name: str) -> tuple[int, list[str | int]]:
    """ruff's isort-style key: SCREAMING_CASE, then CamelCase, then the rest; natural order."""
    if len(name) > 1 and name.isupper():
        category = 0
    elif name[:1].isupper():
        category = 1
    else:
        category = 2
    parts = re.split(r"(\d+)", name)
    return category, [int(part) if index % 2 else part for index, part in enumerate(parts)]


def test_ruf022_key_orders_constants_classes_then_the_rest_naturally() -> None:
    names = ["pull", "Platform", "__version__", "MAX_2", "Layer10", "DEFAULT_PLATFORM", "Layer9"]

    assert sorted(names, key=ruf022_key) == [
        "DEFAULT_PLATFORM",
        "MAX_2",
        "Layer9",
        "Layer10",
        "Platform",
        "__version__",
        "pull",
    ]


def test_all_is_sorted_as_ruff_ruf022_wants() -> None:
    assert bulkpull.__all__ == sorted(bulkpull.__all__, key=ruf022_key)


def test_all_has_no_duplicates() -> None:
    assert len(bulkpull.__all__) == len(set(bulkpull.__all__))


@pytest.mark.parametrize("name", bulkpull.__all__)
def test_every_exported_name_exists(name: str) -> None:
    assert hasattr(bulkpull, name)


def test_everything_the_package_imports_from_its_modules_is_exported() -> None:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bulkpull"):
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id != "__all__":
                    bound.add(target.id)
    public = {name for name in bound if not name.startswith("_") or name.endswith("__")}

    assert sorted(public - set(bulkpull.__all__)) == []


def test_every_error_class_is_exported() -> None:
    errors = importlib.import_module("bulkpull.errors")
    defined = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    ]

    assert "BulkpullError" in defined
    assert sorted(set(defined) - set(bulkpull.__all__)) == []


def _defined_in(modules: list[ModuleType]) -> set[str]:
    """Names of the classes and generic type aliases the bulkpull modules define."""
    found: set[str] = set()
    for module in modules:
        tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                found.add(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    value = getattr(module, getattr(target, "id", ""), None)
                    if hasattr(value, "__origin__"):  # e.g. X = Callable[[int], None]
                        found.add(target.id)  # type: ignore[attr-defined]
    return found


def _annotation_names(annotation: object) -> set[str]:
    if not isinstance(annotation, str):
        return set()
    return {
        node.id
        for node in ast.walk(ast.parse(annotation, mode="eval"))
        if isinstance(node, ast.Name)
    }


def _annotations_of_public_surface(obj: object) -> set[str]:
    """Names used in the annotations a caller of ``obj`` sees: parameters, returns, fields,
    and the signatures of public methods and properties."""
    names: set[str] = set()
    functions: list[object] = []
    if inspect.isfunction(obj):
        functions.append(obj)
    elif isinstance(obj, type):
        if dataclasses.is_dataclass(obj):
            for field in dataclasses.fields(obj):
                if not field.name.startswith("_"):
                    names |= _annotation_names(field.type)
        for attribute, value in vars(obj).items():
            if attribute.startswith("_") and attribute != "__init__":
                continue
            if isinstance(value, property):
                functions.append(value.fget)
            elif isinstance(value, classmethod | staticmethod):
                functions.append(value.__func__)
            elif inspect.isfunction(value):
                functions.append(value)
    for function in functions:
        for parameter, annotation in getattr(function, "__annotations__", {}).items():
            if not parameter.startswith("_"):
                names |= _annotation_names(annotation)
    return names


def test_every_bulkpull_type_in_a_public_signature_is_exported() -> None:
    modules = [importlib.import_module(f"bulkpull.{name}") for name in SUBMODULES]
    ours = _defined_in(modules)
    missing: dict[str, list[str]] = {}
    for exported in bulkpull.__all__:
        for name in _annotations_of_public_surface(getattr(bulkpull, exported)):
            if name in ours and name not in bulkpull.__all__:
                missing.setdefault(name, []).append(exported)

    assert missing == {}, "used in the public API but not exported: " + ", ".join(
        f"{name} (by {', '.join(users)})" for name, users in sorted(missing.items())
    )


CLASSES_AND_FUNCTIONS = [
    name
    for name in bulkpull.__all__
    if isinstance(getattr(bulkpull, name), type) or inspect.isfunction(getattr(bulkpull, name))
]


@pytest.mark.parametrize("name", CLASSES_AND_FUNCTIONS)
def test_type_hints_of_every_exported_class_and_function_resolve(name: str) -> None:
    """Typing tools (pydantic, typeguard, IDEs) read annotations through ``get_type_hints``,
    which must find every name an annotation mentions."""
    obj = getattr(bulkpull, name)
    typing.get_type_hints(obj)


def test_every_exported_class_and_function_has_a_docstring_of_its_own() -> None:
    """``help(bulkpull.Status)`` is where a library user looks first; an enum without one
    shows only ``An enumeration.``."""
    documented = {
        name: (getattr(bulkpull, name).__doc__ or "").strip() for name in CLASSES_AND_FUNCTIONS
    }
    undocumented = [name for name, doc in documented.items() if not doc]

    assert undocumented == []


def test_version_is_the_installed_distribution_version() -> None:
    assert bulkpull.__version__ == importlib.metadata.version("bulkpull")
