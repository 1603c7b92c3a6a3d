"""The import rules of DESIGN.md, read from the source with ``ast``.

Every module belongs to a group. Values are at the bottom (with ``files``, the file work the
store and the outputs share); the three stages (``registry``, ``store``, ``output``) stand
beside each other; orchestration uses them; the public package
(``import bulkpull``) sits above; the command line is on top. A module imports only modules of
its own group and of the groups its group uses (``USES``), so siblings never know each other.
Within a group modules may import each other, but never in a cycle. A package (a directory) is
the group of its name; its modules are listed lowest first in ``ORDER``, and each imports only
modules listed before it (its ``__init__`` any of them, and no module its own ``__init__``). A
module outside a package enters it through the package itself
(``from bulkpull.registry import Transport``), never through one of its modules. Each
third-party dependency (and ``tarfile``) is imported only by its owners (``OWNERS``).

Modules are named by their path below ``bulkpull`` with dots (``registry.client``); a package's
``__init__`` by the package's name (``registry``), the top one as ``__init__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import bulkpull

SOURCE = Path(bulkpull.__file__).parent
PACKAGE = "bulkpull"

# What each group may import besides its own modules. "files" holds what the store and the
# outputs both do with files (new unique temporaries, names never followed, file calls kept off
# the event loop), so that neither needs the other for it.
USES: Mapping[str, frozenset[str]] = {
    "values": frozenset(),
    "files": frozenset({"values"}),
    "registry": frozenset({"values"}),
    "store": frozenset({"values", "files"}),
    "output": frozenset({"values", "files"}),
    "engine": frozenset({"values", "files", "registry", "store", "output"}),
    "api": frozenset({"values", "files", "registry", "store", "output", "engine"}),
    "cli": frozenset({"api"}),
}
# The modules of each package, lowest first; the package's __init__ stands above them all.
ORDER: Mapping[str, tuple[str, ...]] = {
    "registry": (
        "routing",
        "proxies",
        "auth",
        "authfiles",
        "keychain",
        "session",
        "status",
        "redirects",
        "ratelimit",
        "authflow",
        "tokens",
        "ping",
        "mirrors",
        "transport",
        "referrals",
        "client",
        "pushclient",
    ),
    "store": ("locks", "partials", "blobs", "uploadstate"),
    "output": (
        "contents",
        "archive",
        "volumes",
        "leftovers",
        "filling",
        "verify_files",
        "verify_tar",
        "delta",
        "layout",
        "verify_docker",
        "verify",
        "verify_lockfile",
        "signed",
        "sources",
        "readback",
        "writers",
        "collected",
    ),
    "engine": (
        "options",
        "have",
        "entries",
        "landing",
        "downloads",
        "configs",
        "referrers",
        "results",
        "outputs",
        "images",
        "pull",
        "pushoptions",
        "pushplan",
        "uploads",
        "expected",
        "delivery",
        "push",
        "peers",
        "footprint",
        "copy",
        "verify_registry",
    ),
    "cli": (
        "text",
        "tally",
        "display",
        "summary",
        "commands",
        "flags",
        "inputs",
        "results",
        "runs",
        "copy",
        "verify",
        "pull",
        "push",
    ),
}
# The group of each module that is not (yet) in a package named after its group. A module in a
# package belongs to the group its package is named after: registry.client is in "registry".
GROUP_OF: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "errors",
            "digest",
            "reference",
            "platform",
            "jsondoc",
            "manifest",
            "referrers",
            "discovery",
            "keys",
            "signatures",
            "resolved",
            "imagelist",
            "usage",
            "report",
            "retry",
            "destination",
            "shard",
            "tasks",
            "targets",
            "pushreport",
            "lazy",
        ),
        "values",
    ),
    "files": "files",
    "ranges": "files",
    "__init__": "api",
    "__main__": "cli",
}
# Top-level import name -> the groups or modules allowed to import it.
OWNERS: Mapping[str, frozenset[str]] = {
    # files holds the cancellation-safe open and the atomic writes; the store uses aiofiles.os.
    "aiofiles": frozenset({"files", "store"}),
    # The HTTP piece of the registry stage; aiohttp types never leave it.
    "aiohttp": frozenset({"registry.session"}),
    "aiohttp_socks": frozenset({"registry.session"}),
    # The command line's parsing: the app, its command classes, flags, and exits.
    "typer": frozenset({"cli", "cli.commands", "cli.flags", "cli.verify", "cli.pull", "cli.push"}),
    # Drawing; the words and numbers it draws (cli.text, cli.tally) are plain Python.
    "rich": frozenset({"cli.display", "cli.summary"}),
    # Archives are written and read back by the output stage only.
    "tarfile": frozenset({"output"}),
    # Keys are read, and signatures checked with them, in one place.
    "cryptography": frozenset({"keys"}),
}


@dataclass(frozen=True)
class Import:
    """One import as a module wrote it: a bulkpull module (dotted, as above) or a top-level
    third-party name."""

    target: str
    internal: bool
    line: int
    text: str


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    if len(parts) > 1 and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


FILES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}
MODULES = sorted(FILES)
PACKAGES = frozenset(
    name
    for name, path in FILES.items()
    if len(path.relative_to(SOURCE).parts) > 1 and path.name == "__init__.py"
)


def group_of(module: str) -> str | None:
    """The group ``module`` belongs to, or None when it is not placed in one."""
    if module in GROUP_OF:
        return GROUP_OF[module]
    top = module.split(".")[0]
    return top if "." in module or module in PACKAGES else None


def package_of(module: str) -> str | None:
    """The package ``module`` is a module of, or is the ``__init__`` of."""
    if "." in module:
        return module.rsplit(".", 1)[0]
    return module if module in PACKAGES else None


def imports_of(source: str, module: str, known: Iterable[str] = MODULES) -> list[Import]:
    """Every import in ``source`` (nested and ``TYPE_CHECKING`` ones too), resolved; ``known``
    are the bulkpull modules, which tell ``from bulkpull.x import y`` (module y) from a name."""
    modules = frozenset(known)
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(_classify(alias.name, node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            text = ast.unparse(node)
            if base.split(".")[0] != PACKAGE:
                found.append(_classify(base, node.lineno, text))
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                named = submodule if _dotted(submodule) in modules else base
                found.append(_classify(named, node.lineno, text))
    return sorted(found, key=lambda i: (i.line, i.target))


def _absolute(node: ast.ImportFrom, module: str) -> str:
    """The module a ``from … import`` reads from, relative imports resolved from ``module``."""
    if not node.level:
        return node.module or ""
    parts = [] if module == "__init__" else module.split(".")
    package = [PACKAGE, *(parts if module in PACKAGES else parts[:-1])]
    base = ".".join(package[: len(package) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _dotted(name: str) -> str:
    """``bulkpull.registry.client`` as modules are named here: ``registry.client``."""
    return name.removeprefix(f"{PACKAGE}.") if name != PACKAGE else "__init__"


def _classify(name: str, line: int, text: str) -> Import:
    if name == PACKAGE or name.startswith(f"{PACKAGE}."):
        return Import(_dotted(name), True, line, text)
    return Import(name.split(".")[0], False, line, text)


def violations(module: str, source: str, known: Iterable[str] = MODULES) -> list[str]:
    """What ``module`` imports against the rules, one sentence each."""
    group = group_of(module)
    problems = [] if group else [f"bulkpull.{module} is not placed in a group; add it to GROUP_OF"]
    for imported in imports_of(source, module, known):
        where = f"bulkpull.{module} line {imported.line}: {imported.text!r}"
        if imported.internal:
            problem = group and _internal_problem(module, group, imported.target)
        else:
            problem = _owner_problem(module, group, imported.target)
        if problem:
            problems.append(f"{where} {problem}")
    return problems


def _internal_problem(module: str, group: str, target: str) -> str | None:
    if target == module:
        return None
    target_group = group_of(target)
    if target_group is None:
        return f"imports bulkpull.{target}, which is not placed in a group"
    if target_group != group and target_group not in USES[group]:
        uses = ", ".join(sorted(USES[group])) or "nothing but its own group"
        return f"imports bulkpull.{target} ({target_group}); {group} may use {uses}"
    home, entered = package_of(module), package_of(target)
    if entered is not None and entered != home and target != entered:
        return f"imports bulkpull.{target}; enter {entered} through bulkpull.{entered}"
    if home is not None and home != module and entered == home:
        return _order_problem(home, module, target)
    return None


def _order_problem(package: str, module: str, target: str) -> str | None:
    """Whether ``module`` of ``package`` may import ``target`` of the same package."""
    if target == package:
        return f"imports its own package's __init__; name the module, bulkpull.{package}.X"
    order = ORDER.get(package, ())
    name, wanted = module.rpartition(".")[2], target.rpartition(".")[2]
    if name not in order or wanted not in order:
        missing = name if name not in order else wanted
        return f"imports within {package}, whose ORDER does not list {missing}"
    if order.index(wanted) >= order.index(name):
        return f"imports bulkpull.{target}, which is not below {module} in {package}'s ORDER"
    return None


def _owner_problem(module: str, group: str | None, name: str) -> str | None:
    owners = OWNERS.get(name)
    if owners is None or module in owners or group in owners:
        return None
    return f"imports {name}, which only {', '.join(sorted(owners))} may import"


def cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A cycle of imports in ``graph`` (module -> the modules it imports), or [] if none."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = "open"
        for after in sorted(graph.get(node, ())):
            if state.get(after) == "open":
                return [*path[path.index(after) :], after]
            if after not in state and (found := visit(after, [*path, after])):
                return found
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return []


def _graph() -> dict[str, set[str]]:
    return {
        module: {
            imported.target
            for imported in imports_of(FILES[module].read_text(encoding="utf-8"), module)
            if imported.internal and imported.target != module
        }
        for module in MODULES
    }


def test_every_flat_module_named_in_group_of_exists() -> None:
    assert sorted(set(GROUP_OF) - set(MODULES)) == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_of_a_package_is_in_its_order_and_no_other(package: str) -> None:
    modules = sorted(name.rpartition(".")[2] for name in MODULES if package_of(name) == package)

    assert sorted(ORDER.get(package, ())) == [name for name in modules if name != package]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_follow_groups_packages_and_dependency_owners(module: str) -> None:
    problems = violations(module, FILES[module].read_text(encoding="utf-8"))

    assert not problems, "\n".join(problems)


def test_imports_never_go_round_in_a_cycle() -> None:
    assert cycle(_graph()) == []


# The checker itself, on sources written for the purpose: each rule must be able to fail.
KNOWN = (
    "registry",
    "registry.client",
    "registry.transport",
    "registry.session",
    "registry.routing",
    "store",
    "store.blobs",
    "output",
    "output.archive",
    "engine",
    "engine.pull",
    "cli",
    "cli.display",
    "cli.pull",
)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        pytest.param("digest", "from bulkpull.errors import X", [], id="value-uses-a-value"),
        pytest.param(
            "engine.pull", "from bulkpull.registry import Transport", [], id="engine-uses-a-stage"
        ),
        pytest.param(
            "registry.client", "from .transport import Transport", [], id="relative-in-package"
        ),
        pytest.param(
            "registry.client",
            "from bulkpull.store import BlobStore",
            [
                "bulkpull.registry.client line 1: 'from bulkpull.store import BlobStore' "
                "imports bulkpull.store (store); registry may use values"
            ],
            id="registry-imports-store",
        ),
        pytest.param(
            "registry.client",
            "def f():\n    from .. import store",
            [
                "bulkpull.registry.client line 2: 'from .. import store' imports "
                "bulkpull.store (store); registry may use values"
            ],
            id="nested-relative-sibling-import",
        ),
        pytest.param(
            "output.archive",
            "from bulkpull.registry import Transport",
            [
                "bulkpull.output.archive line 1: 'from bulkpull.registry import Transport' imports "
                "bulkpull.registry (registry); output may use files, values"
            ],
            id="output-imports-registry",
        ),
        pytest.param(
            "store.blobs",
            "from bulkpull.output import Bundle",
            [
                "bulkpull.store.blobs line 1: 'from bulkpull.output import Bundle' imports "
                "bulkpull.output (output); store may use files, values"
            ],
            id="store-imports-output",
        ),
        pytest.param(
            "files",
            "from bulkpull.store import BlobStore",
            [
                "bulkpull.files line 1: 'from bulkpull.store import BlobStore' imports "
                "bulkpull.store (store); files may use values"
            ],
            id="shared-files-import-a-stage",
        ),
        pytest.param(
            "digest",
            "from bulkpull.registry import Mirror",
            [
                "bulkpull.digest line 1: 'from bulkpull.registry import Mirror' imports "
                "bulkpull.registry (registry); values may use nothing but its own group"
            ],
            id="value-imports-a-stage",
        ),
        pytest.param(
            "errors",
            "import bulkpull.engine",
            [
                "bulkpull.errors line 1: 'import bulkpull.engine' imports bulkpull.engine "
                "(engine); values may use nothing but its own group"
            ],
            id="value-imports-the-engine",
        ),
        pytest.param(
            "engine.pull",
            "from bulkpull import PullOptions",
            [
                "bulkpull.engine.pull line 1: 'from bulkpull import PullOptions' imports "
                "bulkpull.__init__ (api); engine may use files, output, registry, store, values"
            ],
            id="engine-imports-the-public-package",
        ),
        pytest.param(
            "engine.pull",
            "from bulkpull.registry.transport import Transport",
            [
                "bulkpull.engine.pull line 1: 'from bulkpull.registry.transport import Transport' "
                "imports bulkpull.registry.transport; enter registry through bulkpull.registry"
            ],
            id="package-entered-through-a-module",
        ),
        pytest.param(
            "registry.client",
            "from bulkpull.registry import Transport",
            [
                "bulkpull.registry.client line 1: 'from bulkpull.registry import Transport' "
                "imports its own package's __init__; name the module, bulkpull.registry.X"
            ],
            id="module-imports-its-own-package",
        ),
        pytest.param(
            "registry.routing",
            "from .session import Response",
            [
                "bulkpull.registry.routing line 1: 'from .session import Response' imports "
                "bulkpull.registry.session, which is not below registry.routing in registry's "
                "ORDER"
            ],
            id="upward-import-within-a-package",
        ),
        pytest.param(
            "registry.gadgets",
            "from .session import Response",
            [
                "bulkpull.registry.gadgets line 1: 'from .session import Response' imports "
                "within registry, whose ORDER does not list gadgets"
            ],
            id="package-module-missing-from-its-order",
        ),
        pytest.param("registry", "from .client import RegistryClient", [], id="init-uses-modules"),
        pytest.param("cli", "import bulkpull\nfrom bulkpull import Platform", [], id="cli-public"),
        pytest.param("cli", "from bulkpull.cli import display", [], id="cli-uses-its-modules"),
        pytest.param("cli.pull", "from . import display", [], id="relative-within-cli"),
        pytest.param(
            "cli.display",
            "from bulkpull.cli import pull",
            [
                "bulkpull.cli.display line 1: 'from bulkpull.cli import pull' imports "
                "bulkpull.cli.pull, which is not below cli.display in cli's ORDER"
            ],
            id="display-uses-a-command",
        ),
        pytest.param(
            "cli.display",
            "from bulkpull.report import Stage",
            [
                "bulkpull.cli.display line 1: 'from bulkpull.report import Stage' imports "
                "bulkpull.report (values); cli may use api"
            ],
            id="cli-imports-an-implementation-module",
        ),
        pytest.param(
            "cli.pull",
            "from bulkpull import registry",
            [
                "bulkpull.cli.pull line 1: 'from bulkpull import registry' imports "
                "bulkpull.registry (registry); cli may use api"
            ],
            id="cli-imports-a-stage-through-the-package",
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
            "registry.client",
            "import aiohttp.web",
            [
                "bulkpull.registry.client line 1: 'import aiohttp.web' imports aiohttp, which "
                "only registry.session may import"
            ],
            id="foreign-owner",
        ),
        pytest.param("registry.session", "import aiohttp_socks", [], id="owner-module"),
        pytest.param("output.verify_tar", "import tarfile", [], id="owner-group"),
        pytest.param(
            "engine.pull",
            "from tarfile import TarFile",
            [
                "bulkpull.engine.pull line 1: 'from tarfile import TarFile' imports tarfile, which "
                "only output may import"
            ],
            id="tarfile-outside-output",
        ),
        pytest.param(
            "gadgets",
            "from bulkpull.engine import pull_image\nimport tarfile",
            [
                "bulkpull.gadgets is not placed in a group; add it to GROUP_OF",
                "bulkpull.gadgets line 2: 'import tarfile' imports tarfile, which only output "
                "may import",
            ],
            id="unplaced-module",
        ),
        pytest.param(
            "engine.pull",
            "from bulkpull import gadgets",
            [
                "bulkpull.engine.pull line 1: 'from bulkpull import gadgets' imports "
                "bulkpull.gadgets, "
                "which is not placed in a group"
            ],
            id="import-of-an-unplaced-module",
        ),
    ],
)
def test_checker_reports_module_and_import(module: str, source: str, expected: list[str]) -> None:
    assert violations(module, source, (*KNOWN, "gadgets")) == expected


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        pytest.param({"a": ["b"], "b": ["c"], "c": []}, [], id="a-chain"),
        pytest.param({"a": ["b", "c"], "b": ["c"], "c": []}, [], id="a-diamond"),
        pytest.param({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"], id="a-cycle"),
        pytest.param({"a": ["a2"], "a2": ["b"], "b": ["a2"]}, ["a2", "b", "a2"], id="inner-cycle"),
    ],
)
def test_checker_finds_a_cycle(graph: dict[str, list[str]], expected: list[str]) -> None:
    assert cycle(graph) == expected
