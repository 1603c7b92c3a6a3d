"""The import rules of DESIGN.md, read from the source with ``ast``.

A module imports only bulkpull modules above it in ``LAYERS``; the modules of the ``cli``
package use only the public package (and each other); each third-party dependency (and
``tarfile``) has exactly the owners listed in ``OWNERS``. Modules of a package are named with a
dot (``cli.pull``), a package's ``__init__`` by the package's name (``cli``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import bulkpull

SOURCE = Path(bulkpull.__file__).parent
PACKAGE = "bulkpull"

# Lowest first. "__init__" stands for the package itself (``import bulkpull``).
LAYERS = (
    "errors",
    "files",
    "digest",
    "reference",
    "platform",
    "jsondoc",
    "manifest",
    "referrers",
    "discovery",
    "signatures",
    "network",
    "ratelimit",
    "auth",
    "credentials",
    "options",
    "transport",
    "registry",
    "blobstore",
    "archive",
    "entries",
    "verify_files",
    "verify_tar",
    "verify_docker",
    "verify",
    "imagelist",
    "verify_lock",
    "report",
    "outputs",
    "downloads",
    "pull",
    "__init__",
    "cli.text",
    "cli.tally",
    "cli.display",
    "cli.summary",
    "cli.commands",
    "cli.flags",
    "cli.inputs",
    "cli.results",
    "cli.verify",
    "cli.pull",
    "cli",
    "__main__",
)
# The command line's own modules: they may import the public package and each other (in layer
# order), never an implementation module.
PUBLIC_API_ONLY = frozenset(module for module in LAYERS if module.split(".")[0] == "cli")
FRONT_END_IMPORTS = PUBLIC_API_ONLY | {"__init__"}
# Top-level import name -> the modules allowed to import it.
OWNERS = {
    # files holds the cancellation-safe open and the atomic writes; the store uses aiofiles.os.
    "aiofiles": frozenset({"files", "blobstore"}),
    "aiohttp": frozenset({"transport"}),
    "aiohttp_socks": frozenset({"transport"}),
    # The command line's parsing: the app, its command classes, flags, and exits.
    "typer": frozenset({"cli", "cli.commands", "cli.flags", "cli.verify", "cli.pull"}),
    # Drawing; the words and numbers it draws (cli.text, cli.tally) are plain Python.
    "rich": frozenset({"cli.display", "cli.summary"}),
    # archive writes tars, verify_tar reads them.
    "tarfile": frozenset({"archive", "verify_tar"}),
    "cryptography": frozenset({"signatures"}),
}


@dataclass(frozen=True)
class Import:
    """One imported module as ``module`` names it: a bulkpull layer or a top-level name."""

    target: str
    internal: bool
    line: int
    text: str


def imports_of(source: str, module: str = "") -> list[Import]:
    """Every import in ``source`` (nested and ``TYPE_CHECKING`` ones too), resolved; relative
    imports from the package ``module`` is in."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        text = ast.unparse(node) if isinstance(node, ast.Import | ast.ImportFrom) else ""
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(_classify(alias.name, node.lineno, text))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            for alias in node.names if base.split(".")[0] == PACKAGE else []:
                # "from bulkpull.cli import display" imports the module bulkpull.cli.display.
                submodule = f"{base}.{alias.name}"
                named = submodule if _layer(submodule) in LAYERS else base
                found.append(_classify(named, node.lineno, text))
            if base.split(".")[0] != PACKAGE:
                found.append(_classify(base, node.lineno, text))
    return sorted(found, key=lambda i: (i.line, i.target))


def _absolute(node: ast.ImportFrom, module: str) -> str:
    """The module a ``from … import`` reads from; ``from . import x`` from inside a package."""
    if not node.level:
        return node.module or ""
    parts = [] if module == "__init__" else module.split(".")
    package = [PACKAGE, *(parts if module in PACKAGES else parts[:-1])]
    base = ".".join(package[: len(package) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _layer(name: str) -> str:
    """``bulkpull.cli.pull`` as LAYERS names it: ``cli.pull``; ``bulkpull`` is ``__init__``."""
    return name.removeprefix(f"{PACKAGE}.") if name != PACKAGE else "__init__"


def _classify(name: str, line: int, text: str) -> Import:
    if name == PACKAGE or name.startswith(f"{PACKAGE}."):
        return Import(_layer(name), True, line, text)
    return Import(name.split(".")[0], False, line, text)


def violations(module: str, source: str) -> list[str]:
    """What ``module`` imports against the rules, one sentence each."""
    problems: list[str] = []
    placed = module in LAYERS
    if not placed:
        problems.append(f"bulkpull.{module} is not placed in LAYERS; add it where it belongs")
    for imported in imports_of(source, module):
        where = f"bulkpull.{module} line {imported.line}: {imported.text!r}"
        if imported.internal:
            if imported.target == module or not placed:
                continue
            if imported.target not in LAYERS:
                problems.append(f"{where} imports unknown module bulkpull.{imported.target}")
            elif module in PUBLIC_API_ONLY and imported.target not in FRONT_END_IMPORTS:
                problems.append(
                    f"{where} imports bulkpull.{imported.target}; {module} may use only the "
                    "public API (import from bulkpull)"
                )
            elif LAYERS.index(imported.target) >= LAYERS.index(module):
                problems.append(
                    f"{where} imports bulkpull.{imported.target}, which is not above "
                    f"{module} in the layer order"
                )
        elif imported.target in OWNERS and module not in OWNERS[imported.target]:
            owners = ", ".join(sorted(OWNERS[imported.target]))
            problems.append(f"{where} imports {imported.target}, which only {owners} may import")
    return problems


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    if len(parts) > 1 and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


FILES = {_module_name(path): path for path in SOURCE.rglob("*.py")}
MODULES = sorted(FILES)
# Packages inside bulkpull, named by their __init__'s module name.
PACKAGES = frozenset(name for name, path in FILES.items() if path.name == "__init__.py")


def test_every_layer_is_a_module_and_every_module_is_a_layer() -> None:
    assert sorted(LAYERS) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_follow_layers_and_dependency_owners(module: str) -> None:
    source = FILES[module].read_text(encoding="utf-8")

    problems = violations(module, source)

    assert not problems, "\n".join(problems)


# The checker itself, on sources written for the purpose: each rule must be able to fail.
@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        pytest.param("digest", "from bulkpull.errors import X", [], id="below-is-fine"),
        pytest.param(
            "errors",
            "from bulkpull.digest import Digest",
            [
                "bulkpull.errors line 1: 'from bulkpull.digest import Digest' imports "
                "bulkpull.digest, which is not above errors in the layer order"
            ],
            id="upward-import",
        ),
        pytest.param(
            "registry",
            "def f():\n    import bulkpull.pull",
            [
                "bulkpull.registry line 2: 'import bulkpull.pull' imports bulkpull.pull, "
                "which is not above registry in the layer order"
            ],
            id="nested-import",
        ),
        pytest.param(
            "manifest",
            "from . import auth",
            [
                "bulkpull.manifest line 1: 'from . import auth' imports bulkpull.auth, "
                "which is not above manifest in the layer order"
            ],
            id="relative-import",
        ),
        pytest.param(
            "pull",
            "from bulkpull import PullOptions",
            [
                "bulkpull.pull line 1: 'from bulkpull import PullOptions' imports "
                "bulkpull.__init__, which is not above pull in the layer order"
            ],
            id="package-import-below-init",
        ),
        pytest.param("cli", "import bulkpull\nfrom bulkpull import Platform", [], id="cli-public"),
        pytest.param("cli", "from bulkpull.cli import display", [], id="cli-uses-its-modules"),
        pytest.param("cli.pull", "from . import display", [], id="relative-within-cli"),
        pytest.param(
            "cli.display",
            "from bulkpull.cli import pull",
            [
                "bulkpull.cli.display line 1: 'from bulkpull.cli import pull' imports "
                "bulkpull.cli.pull, which is not above cli.display in the layer order"
            ],
            id="display-uses-a-command",
        ),
        pytest.param(
            "cli.text",
            "from .display import stdout",
            [
                "bulkpull.cli.text line 1: 'from .display import stdout' imports "
                "bulkpull.cli.display, which is not above cli.text in the layer order"
            ],
            id="relative-upward-within-cli",
        ),
        pytest.param(
            "cli.display",
            "from bulkpull.report import Stage",
            [
                "bulkpull.cli.display line 1: 'from bulkpull.report import Stage' imports "
                "bulkpull.report; cli.display may use only the public API (import from bulkpull)"
            ],
            id="display-submodule",
        ),
        pytest.param(
            "cli.tally",
            "import rich.text",
            [
                "bulkpull.cli.tally line 1: 'import rich.text' imports rich, which only "
                "cli.display, cli.summary may import"
            ],
            id="rich-outside-display",
        ),
        pytest.param(
            "cli",
            "from bulkpull.errors import BulkpullError",
            [
                "bulkpull.cli line 1: 'from bulkpull.errors import BulkpullError' imports "
                "bulkpull.errors; cli may use only the public API (import from bulkpull)"
            ],
            id="cli-submodule",
        ),
        pytest.param(
            "cli",
            "from bulkpull import errors",
            [
                "bulkpull.cli line 1: 'from bulkpull import errors' imports bulkpull.errors; "
                "cli may use only the public API (import from bulkpull)"
            ],
            id="cli-submodule-via-package",
        ),
        pytest.param(
            "registry",
            "import aiohttp.web",
            [
                "bulkpull.registry line 1: 'import aiohttp.web' imports aiohttp, which only "
                "transport may import"
            ],
            id="foreign-owner",
        ),
        pytest.param(
            "pull",
            "from tarfile import TarFile",
            [
                "bulkpull.pull line 1: 'from tarfile import TarFile' imports tarfile, which only "
                "archive, verify_tar may import"
            ],
            id="tarfile-outside-archive",
        ),
        pytest.param("transport", "import aiohttp_socks", [], id="owner-may-import"),
        pytest.param(
            "gadgets",
            "from bulkpull.pull import pull_image\nimport tarfile",
            [
                "bulkpull.gadgets is not placed in LAYERS; add it where it belongs",
                "bulkpull.gadgets line 2: 'import tarfile' imports tarfile, which only archive, "
                "verify_tar may import",
            ],
            id="unplaced-module",
        ),
    ],
)
def test_checker_reports_module_and_import(module: str, source: str, expected: list[str]) -> None:
    assert violations(module, source) == expected
