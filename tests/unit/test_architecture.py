"""The architecture, pinned: imports point down the layers of docs/architecture.md, one exception tree.

An AST walk over every module (no import-linter dependency): each ``import`` of a project module must
go to a lower layer, or stay inside its own package. Function-local imports are refused outright
except the command loader's, which names its targets as data.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import imagegen
from imagegen import errors

ROOT = Path(__file__).resolve().parents[2]

#: Top to bottom. A module belongs to the longest prefix that names it; it may import its own
#: package's modules and anything in a lower layer, never a higher one or a sibling in its layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("imagegen",),  # the package itself: the public names, re-exported lazily from below
    ("tasks",),
    ("worker",),
    ("config.celery",),
    ("imagegen.cli",),  # `imagegen api` serves the app
    ("imagegen.devstack",),  # local processes for the demo, tests and benchmarks
    ("imagegen.api",),
    ("imagegen.ops",),
    ("imagegen.byname",),
    ("imagegen.producer",),
    # The handlers, in the order a job meets them (a poll hands over to finalize), above the parts they share.
    ("imagegen.jobs.submit", "imagegen.jobs.reconciler"),
    ("imagegen.jobs.poll",),
    ("imagegen.jobs.finalize",),
    ("imagegen.jobs",),
    ("imagegen.webhooks",),
    ("imagegen.runtime",),
    ("imagegen.jobview",),
    ("imagegen.providers",),
    ("imagegen.storage",),
    ("imagegen.net",),
    ("imagegen.timing",),
    ("imagegen.store",),
    ("config",),  # settings, their value groups, and the limits derived from them
    ("imagegen.request",),
    ("imagegen.messages", "imagegen.routes", "imagegen.redaction"),
    ("imagegen.errors", "imagegen.constants", "imagegen.ids", "imagegen.jsondepth", "imagegen.metrics"),
    ("imagegen.simulator",),  # a stand-in for the upstream APIs: imports nothing of the core
)
#: Packages whose modules (those not given a layer of their own) may import each other: one concern.
OWN_PACKAGE_OK = (
    "imagegen.api",
    "imagegen.cli",
    "imagegen.ops",
    "imagegen.webhooks",
    "imagegen.providers",
    "imagegen.net",
    "imagegen.timing",
    "imagegen.store",
    "imagegen.jobs",
    "imagegen.simulator",
    "worker",
    "tasks",
    "config",
)


#: Rows that name one module only, not a package: ``imagegen`` is the facade, not everything below it.
EXACT = frozenset({"imagegen"})


def _rank(module: str) -> tuple[int, str]:
    best: tuple[int, int, str] | None = None
    for rank, layer in enumerate(LAYERS):
        for prefix in layer:
            named = module == prefix or (prefix not in EXACT and module.startswith(prefix + "."))
            if named and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix), prefix)
    assert best is not None, f"{module} is in no layer"
    return best[0], best[2]


def _modules() -> list[tuple[str, Path]]:
    found = []
    for top in ("imagegen", "worker", "tasks", "config"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            name = ".".join(parts)
            if name.startswith("imagegen.store.migrations"):
                continue  # Alembic scripts: loaded by Alembic, not imported
            found.append((name, path))
    return found


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1])


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against the file's package."""
    if node.level == 0:
        return node.module or ""
    base = _package_of(path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_package(module: str) -> bool:
    return (ROOT / module.replace(".", "/") / "__init__.py").exists()


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module level) for every project import in the file (relative ones resolved;
    ``from package import module`` counts as importing that module)."""
    tree = ast.parse(path.read_text())
    top_level = {id(stmt) for stmt in tree.body}
    for stmt in tree.body:  # imports under `if TYPE_CHECKING:` (or `try:`) are module level too
        if isinstance(stmt, ast.If | ast.Try):
            top_level |= {id(child) for child in stmt.body}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            module = _absolute(node, path)
            names = [module]
            if _is_package(module):
                names = [
                    f"{module}.{a.name}"
                    if _is_package(f"{module}.{a.name}") or (ROOT / module.replace(".", "/") / f"{a.name}.py").exists()
                    else module
                    for a in node.names
                ]
        for name in names:
            if name.split(".")[0] in ("imagegen", "worker", "tasks", "config"):
                out.append((name, node.lineno, id(node) in top_level))
    return out


MODULES = _modules()
CORE = [(m, p) for m, p in MODULES if m.startswith("imagegen")]


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_down(module: str, path: Path) -> None:
    rank, prefix = _rank(module)
    bad = []
    for target, line, _top in _imports(path):
        t_rank, t_prefix = _rank(target)
        same_package = prefix == t_prefix and prefix in OWN_PACKAGE_OK
        if t_rank <= rank and not same_package and target != module:
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} (layer {t_rank} ≥ its own {rank})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_function_local_imports(module: str, path: Path) -> None:
    local = [f"{path.relative_to(ROOT)}:{line} {target}" for target, line, top in _imports(path) if not top]
    assert not local, "function-local imports (a cycle being dodged?):\n" + "\n".join(local)


@pytest.mark.parametrize(("module", "path"), CORE, ids=[m for m, _ in CORE])
def test_core_never_imports_celery(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text())
    foreign = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    foreign += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0]
    for name in foreign:
        assert name.split(".")[0] not in ("celery", "kombu"), f"{module} imports {name}"
    for target, line, _ in _imports(path):
        assert target.split(".")[0] not in ("worker", "tasks"), f"{path}:{line} imports {target}"
        assert target != "config.celery", f"{path}:{line} imports config.celery"


#: The only modules that load code by name, and why: the lazy public names, the lazy CLI commands, and
#: the default publisher (the core finds the Celery shell by name, so it never imports Celery itself).
IMPORTS_BY_NAME = {"imagegen", "imagegen.cli.main", "imagegen.producer"}


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_code_is_loaded_by_name_only_where_it_is_meant_to_be(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text())
    calls = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "import_module")
            or (isinstance(n.func, ast.Name) and n.func.id in ("__import__", "import_module"))
        )
    ]
    assert not calls or module in IMPORTS_BY_NAME, f"{path.relative_to(ROOT)}:{calls} loads a module by name"


#: Handlers never import each other, except that a poll hands a finished task over to finalize.
HANDLERS = {"imagegen.jobs.submit", "imagegen.jobs.poll", "imagegen.jobs.finalize", "imagegen.jobs.reconciler"}
HANDOVERS = {("imagegen.jobs.poll", "imagegen.jobs.finalize")}


def test_handlers_do_not_import_each_other() -> None:
    for module, path in MODULES:
        if module in HANDLERS:
            for target, line, _ in _imports(path):
                if target in HANDLERS and target != module:
                    assert (module, target) in HANDOVERS, f"{path.relative_to(ROOT)}:{line} imports {target}"


def test_simulator_imports_nothing_of_the_core() -> None:
    for module, path in CORE:
        if not module.startswith("imagegen.simulator"):
            continue
        for target, line, _ in _imports(path):
            assert target.startswith("imagegen.simulator"), f"{path}:{line} imports {target}"


def _error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(imagegen.__path__, "imagegen."):
        if "migrations" in info.name:
            continue
        mod = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, errors.ImagegenError):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_one_exception_tree() -> None:
    doc = errors.__doc__ or ""
    for cls in _error_classes():
        assert cls.__module__ == "imagegen.errors", f"{cls.__qualname__} is defined in {cls.__module__}"
        assert re.search(rf"^ +(?:[│ ]*[├└]── )?{cls.__name__}\b", doc, re.M), (
            f"{cls.__name__} is not drawn in the tree of errors.py"
        )


def test_every_module_says_what_it_owns() -> None:
    missing = [m for m, p in MODULES if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert not missing, f"modules without a docstring: {missing}"
