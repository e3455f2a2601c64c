"""Every stage of ``dvc.yaml`` lists, in its ``deps``, each first-party file its command can execute.

The dependency lists are written by hand; when they drift a stale stage looks up to date. For each resolved
stage (``foreach`` expanded by DVC's own resolver) the test reads its ``cmd``, finds what it runs
(``python -m pkg.mod``, ``python path/script.py``, ``python -c CODE``, a notebook run by papermill or
``jupyter nbconvert --execute`` / ``jupyter execute`` — also one that an earlier
``jupytext --to ipynb NB.py -o X.ipynb`` of the stage wrote: then the cells of the percent script ``NB.py`` are
read) and follows, statically with ``ast``, every import whose target is a file of this repository,
transitively. Conservative on purpose:

* an import anywhere in a file counts (function-local, in ``try``), except under ``if TYPE_CHECKING:``,
  which never runs;
* importing ``a.b.c`` executes ``a/__init__.py`` and ``a/b/__init__.py``: they are in the closure;
* ``from pkg import name`` also follows ``pkg/name.py`` when that is a submodule;
* a module a file spawns or loads by name, ``[sys.executable, "-m", "pkg.mod"]``,
  ``importlib.import_module("pkg.mod")``, ``runpy.run_module(...)``, is followed too; a name built at run time
  with a constant prefix (``f"bench.{name}"``) pulls in every module of that package;
* a directory in ``deps`` covers every file under it.

A command segment that is neither a recognised runner nor a plain shell utility (``mkdir`` ...) fails the
check, so a new kind of command cannot silently escape it: extend ``_entries`` when adding one.
"""
from __future__ import annotations

import ast
import functools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Commands that run no code of this repository.
SHELL_UTILITIES = {"mkdir", "rm", "cp", "mv", "touch", "echo", "printf", "true", "ln", "test", "[", ":"}
SEPARATOR_RE = re.compile(r"[;&|()\n]+")                 # &&, ||, ;, |, &, subshells, newlines
PYTHON_RE = re.compile(r"(^|/)python(\d+(\.\d+)?)?$")
# Interpreter options that take a value (python -X dev -W ignore -m mod).
PYTHON_OPTS_WITH_VALUE = {"-X", "-W", "--check-hash-based-pycs"}
# %%magics whose body is Python that the kernel runs.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug", "python", "python3"}


@dataclass
class Stage:
    name: str
    cmds: list[str]
    deps: list[str]
    wdir: Path


@dataclass(frozen=True)
class Entry:
    """Something a command runs: a module name (``python -m``), a Python file, a notebook or source text."""
    kind: str                      # "module" | "script" | "notebook" | "source"
    target: str
    roots: tuple[Path, ...] = ()   # where its top-level imports are looked up


# --------------------------------------------------------------------------------------------- stages
def load_stages(root: Path) -> list[Stage]:
    """The stages of ``root/dvc.yaml`` resolved by DVC itself (``foreach``/``matrix``, ``${...}``, ``vars``)."""
    from dvc.dvcfile import load_file
    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        resolved = load_file(repo, str(root / "dvc.yaml")).resolver.resolve()
    finally:
        repo.close()
    stages = []
    for name, spec in (resolved.get("stages") or {}).items():
        cmd = spec.get("cmd")
        if cmd is None:      # a stage without cmd only tracks data
            continue
        deps = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps") or []]
        stages.append(Stage(name, [cmd] if isinstance(cmd, str) else list(cmd), deps,
                            (root / (spec.get("wdir") or ".")).resolve()))
    return stages


# --------------------------------------------------------------------------------------------- commands
def _segments(cmd: str) -> list[list[str]]:
    """Split a shell command on ``&&``, ``||``, ``;``, ``|``, ``&``, subshell parentheses and newlines."""
    lexer = shlex.shlex(cmd.replace("\\\n", " "), posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    segments, current = [], []
    for tok in lexer:
        if SEPARATOR_RE.fullmatch(tok):
            segments.append(current)
            current = []
        else:
            current.append(tok)
    segments.append(current)
    return [s for s in segments if s]


def _strip_redirections(tokens: list[str]) -> list[str]:
    out, skip = [], False
    for tok in tokens:
        if skip:
            skip = False
        elif re.fullmatch(r"[<>&]+", tok):
            skip = True
        else:
            out.append(tok)
    return out


def _entries(tokens: list[str], wdir: Path, converted: dict[Path, Path] | None = None) -> list[Entry] | None:
    """What one command segment runs: ``[]`` for a plain shell utility, ``None`` when it is not recognised.
    ``converted``: notebook written by an earlier ``jupytext`` segment → the script it was converted from."""
    converted = {} if converted is None else converted
    tokens = _strip_redirections(tokens)
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):    # VAR=value prefixes
        tokens = tokens[1:]
    if tokens and tokens[0] == "env":
        tokens = [t for t in tokens[1:] if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", t)]
    if not tokens:
        return []
    prog, args = tokens[0], tokens[1:]
    if Path(prog).name in SHELL_UTILITIES:
        return []
    if PYTHON_RE.search(prog):
        i = 0
        while i < len(args) and args[i].startswith("-") and args[i] not in ("-m", "-c"):
            i += 2 if args[i] in PYTHON_OPTS_WITH_VALUE else 1
        if i >= len(args):
            return None                                      # a bare interpreter
        if args[i] == "-c":
            return [Entry("source", args[i + 1], (wdir,))] if i + 1 < len(args) else None
        if args[i] == "-m":
            if i + 1 >= len(args):
                return None
            module, rest = args[i + 1], args[i + 2:]
            if module == "papermill":
                return _papermill(rest, wdir, converted)
            if module == "jupytext":
                return _jupytext(rest, wdir, converted)
            if module in ("jupyter", "nbconvert"):
                return _jupyter(([] if module == "jupyter" else ["nbconvert"]) + rest, wdir, converted)
            if _resolve_top(module.split("."), [wdir, ROOT]) is None:
                return None                                  # a third-party module: nothing here tracks it
            return [Entry("module", module, (wdir,))]
        script = (wdir / args[i]).resolve()
        return [Entry("script", str(script), (script.parent, wdir))] if script.is_file() else None
    if Path(prog).name == "papermill":
        return _papermill(args, wdir, converted)
    if Path(prog).name == "jupytext":
        return _jupytext(args, wdir, converted)
    if Path(prog).name == "jupyter":
        return _jupyter(args, wdir, converted)
    return None


def _papermill(args: list[str], wdir: Path, converted: dict[Path, Path]) -> list[Entry] | None:
    # papermill INPUT OUTPUT [options]: the first .ipynb is the input (the output need not exist yet).
    notebooks = [a for a in args if a.endswith(".ipynb")]
    return [_notebook(notebooks[0], wdir, converted)] if notebooks else None


# jupytext options that take a value (the others are flags)
JUPYTEXT_OPTS_WITH_VALUE = {"--to", "--from", "--set-formats", "--format-options", "--opt", "--update-metadata",
                            "--diff-format", "--pipe-fmt", "--set-kernel", "-k", "--run-path"}


def _jupytext(args: list[str], wdir: Path, converted: dict[Path, Path]) -> list[Entry] | None:
    """``jupytext --to ipynb NB.py [-o OUT.ipynb]`` runs no code of the repository, but the notebook it writes
    holds NB.py's cells: record OUT → NB.py, so that a later papermill run of OUT follows NB.py. With
    ``--execute`` it runs the notebook itself; ``--pipe`` / ``--check`` run other commands (not recognised)."""
    inputs, output, i = [], None, 0
    while i < len(args):
        a = args[i]
        if a in ("--pipe", "--check") or a.startswith(("--pipe=", "--check=")):
            return None
        if a in ("-o", "--output") and i + 1 < len(args):
            output, i = args[i + 1], i + 2
        elif a.startswith("--output="):
            output, i = a.split("=", 1)[1], i + 1
        elif a in JUPYTEXT_OPTS_WITH_VALUE:
            i += 2
        else:
            if not a.startswith("-"):
                inputs.append(a)
            i += 1
    if not inputs or (output is not None and len(inputs) != 1):
        return None
    sources = [(wdir / a).resolve() for a in inputs]
    for src in sources:
        written = (wdir / output).resolve() if output is not None else src.with_suffix(".ipynb")
        converted[written] = converted.get(src, src)
    if "--execute" in args:
        return [_notebook(str(src), wdir, converted) for src in sources]
    return []


def _jupyter(args: list[str], wdir: Path, converted: dict[Path, Path] | None = None) -> list[Entry] | None:
    if not args or args[0] not in ("nbconvert", "execute"):
        return None
    if args[0] == "nbconvert" and "--execute" not in args:
        return []                                            # converting without running executes no code
    inputs = [a for prev, a in zip([""] + args, args) if a.endswith(".ipynb") and prev != "--output"]
    return [_notebook(nb, wdir, converted or {}) for nb in inputs] or None


def _notebook(path: str, wdir: Path, converted: dict[Path, Path]) -> Entry:
    nb = (wdir / path).resolve()
    nb = converted.get(nb, nb)            # a notebook jupytext wrote: its script holds the cells
    # The kernel starts in the caller's directory (papermill without --cwd); helpers beside the notebook
    # are importable when it runs from notebooks/, so both count.
    return Entry("notebook", str(nb), (nb.parent, wdir))


def command_entries(stage: Stage) -> tuple[list[Entry], list[str]]:
    """The entries a stage's commands run, and the command segments that were not recognised."""
    entries, unknown = [], []
    converted: dict[Path, Path] = {}                 # what jupytext wrote, for the papermill run after it
    for cmd in stage.cmds:
        for seg in _segments(cmd):
            found = _entries(seg, stage.wdir, converted)
            if found is None:
                unknown.append(shlex.join(seg))
            else:
                entries += found
    if not entries and not unknown:
        unknown.append(" && ".join(stage.cmds) + "   (runs no code this check recognises)")
    return entries, unknown


# --------------------------------------------------------------------------------------------- sources
def _code_cells(path: Path) -> list[str]:
    """The sources of a notebook's code cells: an ``.ipynb`` as stored, a jupytext script (``.py`` percent
    format) as ``jupytext --to ipynb`` converts it (its commented-out magics become magics again)."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    else:
        import jupytext

        cells = jupytext.read(path)["cells"]
    sources = []
    for cell in cells:
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            sources.append("".join(src) if isinstance(src, list) else src)
    return sources


def notebook_source(path: Path) -> tuple[str, list[str]]:
    """The code cells of a notebook as Python (IPython magics and ``!`` lines dropped), and ``%run`` scripts."""
    cells, runs = [], []
    for src in _code_cells(path):
        try:
            ast.parse(src)
            cells.append(src)
            continue
        except SyntaxError:
            pass
        lines = src.splitlines()
        first = next((i for i, line in enumerate(lines) if line.strip()), None)
        if first is not None and lines[first].lstrip().startswith("%%"):
            if lines[first].lstrip()[2:].split(maxsplit=1)[0] not in PYTHON_CELL_MAGICS:
                continue                                     # %%bash, %%writefile ...: not Python
            lines = lines[first + 1:]
        kept = []
        for line in lines:
            stripped = line.lstrip()
            indent = line[: len(line) - len(stripped)]
            if stripped.startswith("%run "):
                runs += shlex.split(stripped)[1:2]
            if (stripped.startswith(("%", "!")) or re.match(r"^[\w.,\s\[\]]+=\s*[!%]", stripped)
                    or (stripped.endswith("?") and not stripped.startswith("#"))):
                kept.append(indent + "pass")
            else:
                kept.append(line)
        cells.append("\n".join(kept))
    return "\n\n".join(cells), runs


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST):
    """``ast.walk`` that skips the bodies of ``if TYPE_CHECKING:`` (never executed)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _string_prefix(node: ast.expr) -> tuple[str, bool] | None:
    """``("pkg.mod", True)`` for a constant, ``("pkg.", False)`` for an f-string's constant prefix."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, True
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value), False
    return None


def _module_refs(tree: ast.AST) -> list[tuple[int, str, tuple[str, ...]]]:
    """``(level, module, names)`` for each import; loads by name are ``(0, module, ())``; a run-time name
    with a constant prefix ``"pkg."`` is ``(0, "pkg", ("*",))`` (the whole package)."""
    refs = []

    def by_name(node: ast.expr, run: bool = False) -> None:
        found = _string_prefix(node)
        if found is None:
            return
        text, exact = found
        if exact and re.fullmatch(r"[A-Za-z_][\w.]*", text):
            refs.append((0, text, ("__main__",) if run else ()))     # -m pkg runs pkg/__main__.py
        elif not exact and re.fullmatch(r"[A-Za-z_][\w.]*\.", text):
            refs.append((0, text.rstrip("."), ("*",)))

    for node in _walk(tree):
        if isinstance(node, ast.Import):
            refs += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            refs.append((node.level, node.module or "", tuple(a.name for a in node.names)))
        elif isinstance(node, (ast.List, ast.Tuple)):        # [sys.executable, "-m", "pkg.mod", ...]
            for a, b in zip(node.elts, node.elts[1:]):
                if isinstance(a, ast.Constant) and a.value == "-m":
                    by_name(b, run=True)
        elif isinstance(node, ast.Call) and node.args:       # import_module / run_module / __import__
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "run_module", "__import__"):
                by_name(node.args[0])
    return refs


# --------------------------------------------------------------------------------------------- resolution
def _resolve_in(base: Path, parts: list[str]) -> list[Path] | None:
    """Files executed by importing ``parts`` below directory ``base``: package ``__init__``s, then the module.

    ``None`` when the top-level name is not there; a name below a module or missing from a package is an
    attribute of what was found (``import pkg.attr`` fails, ``from pkg import attr`` reads it)."""
    files, d = [], base
    for i, part in enumerate(parts):
        if (d / part / "__init__.py").is_file():
            d = d / part
            files.append(d / "__init__.py")
        elif (d / f"{part}.py").is_file():
            files.append(d / f"{part}.py")
            return files
        elif (d / part).is_dir():
            d = d / part                                     # a namespace package: no file of its own
        else:
            return files if i else None
    return files


def _package_dir(base: Path, parts: list[str]) -> Path | None:
    d = base.joinpath(*parts) if parts else base
    return d if d.is_dir() else None


def _resolve_top(parts: list[str], roots: tuple[Path, ...]) -> tuple[Path, list[Path]] | None:
    for root in roots:
        files = _resolve_in(root, parts)
        if files is not None:
            return root, files
    return None


def _within_repo(path: Path, repo: Path) -> bool:
    return path.is_relative_to(repo) and ".venv" not in path.relative_to(repo).parts


@functools.lru_cache(maxsize=None)
def import_closure(entries: tuple[Entry, ...], repo: Path = ROOT) -> frozenset[Path]:
    """Every file of ``repo`` that running ``entries`` can execute (statically, transitively)."""
    closure: set[Path] = set()
    todo: list[tuple[Path, tuple[Path, ...]]] = []       # (python file, roots for its absolute imports)

    def add(files: list[Path], roots: tuple[Path, ...]) -> None:
        for f in files:
            f = f.resolve()
            if _within_repo(f, repo) and f not in closure:
                closure.add(f)
                todo.append((f, roots))

    def add_module(parts: list[str], roots: tuple[Path, ...], *, base: Path | None = None, main: bool = False) -> None:
        if base is not None:
            found = _resolve_in(base, parts) if parts else []
            pkg_root = base
        else:
            hit = _resolve_top(parts, roots)
            if hit is None:
                return
            pkg_root, found = hit
        add(found or [], roots)
        pkg = _package_dir(pkg_root, parts)
        if main and pkg is not None and (pkg / "__main__.py").is_file():
            add([pkg / "__main__.py"], roots)

    def add_from(level: int, module: str, names: tuple[str, ...], origin: Path, roots: tuple[Path, ...]) -> None:
        parts = module.split(".") if module else []
        if level:
            base = origin.parent
            for _ in range(level - 1):
                base = base.parent
            add_module(parts, roots, base=base)
            pkg_root, pkg_parts = base, parts
        else:
            hit = _resolve_top(parts, roots)
            if hit is None:
                return
            add_module(parts, roots)
            pkg_root, pkg_parts = hit[0], parts
        pkg = _package_dir(pkg_root, pkg_parts)
        if pkg is None:
            return
        if "*" in names:                                     # the whole package may be loaded
            add([p for p in sorted(pkg.rglob("*.py"))], roots)
        for name in names:                                   # from pkg import submodule
            if name != "*":
                add(_resolve_in(pkg, [name]) or [], roots)

    for entry in entries:
        if entry.kind == "module":
            add_module(entry.target.split("."), entry.roots, main=True)
        elif entry.kind == "script":
            add([Path(entry.target)], entry.roots)
        elif entry.kind == "notebook":
            nb = Path(entry.target)
            closure.add(nb)
            source, runs = notebook_source(nb)
            for script in runs:
                add([(nb.parent / script)], entry.roots)
            for level, module, names in _module_refs(ast.parse(source, filename=str(nb))):
                if not level:
                    add_from(0, module, names, nb, entry.roots)
        elif entry.kind == "source":
            for level, module, names in _module_refs(ast.parse(entry.target)):
                if not level:
                    add_from(0, module, names, entry.roots[0], entry.roots)

    while todo:
        path, roots = todo.pop()
        if path.suffix == ".py":
            for level, module, names in _file_refs(path, path.stat().st_mtime_ns):
                add_from(level, module, names, path, roots)
    return frozenset(closure)


@functools.lru_cache(maxsize=None)
def _file_refs(path: Path, mtime_ns: int) -> list[tuple[int, str, tuple[str, ...]]]:
    return _module_refs(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))


def covered(path: Path, deps: set[Path]) -> bool:
    """A file is covered by itself or by a directory above it."""
    return path in deps or not deps.isdisjoint(path.parents)


def missing_deps(stage: Stage, repo: Path = ROOT) -> list[str]:
    entries, _ = command_entries(stage)
    deps = {(stage.wdir / d).resolve() for d in stage.deps if "://" not in d}
    return sorted(p.relative_to(repo).as_posix() for p in import_closure(tuple(entries), repo) if not covered(p, deps))


def format_findings(findings: dict[str, list[str]]) -> str:
    """One line per stage; ``foreach`` instances with the same findings share a line."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for name, items in findings.items():
        groups.setdefault((name.split("@")[0], tuple(items)), []).append(name)
    lines = []
    for (group, items), names in groups.items():
        label = names[0] if len(names) == 1 else f"{group}@{{{', '.join(n.split('@', 1)[1] for n in names)}}}"
        lines.append(f"{label}:\n    " + "\n    ".join(items))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return load_stages(ROOT)


def test_every_stage_runs_a_recognised_command(stages: list[Stage]) -> None:
    unknown = {s.name: command_entries(s)[1] for s in stages}
    unknown = {k: v for k, v in unknown.items() if v}
    if unknown:
        pytest.fail("stage commands this check does not recognise (extend _entries in tests/test_dvc_deps.py):\n"
                    + format_findings(unknown), pytrace=False)


def test_stage_deps_cover_the_first_party_code_they_run(stages: list[Stage]) -> None:
    assert len(stages) > 20, "foreach stages are expanded"
    missing = {s.name: m for s in stages if (m := missing_deps(s))}
    if missing:
        pytest.fail("dvc.yaml stages whose deps miss first-party files their command executes (add them to the "
                    "stage's deps):\n" + format_findings(missing), pytrace=False)


def params_read(params: dict, ref: str) -> set[str]:
    """The keys of params.yaml that resolving ``ref`` (``params:<ref>`` of a command) reads: its own mapping (a grid
    group: its ``<sweep>.<dataset>`` entry) and every mapping it or its runs ``inherit:``, transitively, under
    either profile."""
    from lowrank.config import GROUP_KEY, PROFILES, expand_grid, grid_node

    sweep, _, name = ref.partition(".")
    group = expand_grid(params).get(sweep, {}).get(name)
    if group is not None:
        keys, stack = {f"{sweep}.{group['dataset']}"}, [grid_node(params, sweep, group["dataset"], group["seed"])]
    else:
        node = params
        for part in ref.split("."):
            node = node[part]
        keys, stack = {ref}, [node]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        key = node.get("inherit")
        if key is not None and key not in keys:
            keys.add(key)
            parent = params
            for part in key.split("."):
                parent = parent[part]
            stack.append(parent)
        stack += [node.get(p) for p in PROFILES] + list((node.get(GROUP_KEY) or {}).values())
    return keys


def test_stage_params_cover_every_key_their_runs_read() -> None:
    """A run stage lists, in its ``params``, every params.yaml key its runs resolve from, so that editing one
    (a shared budget) re-runs it; and only those of its dataset (tests/test_grid.py)."""
    from dvc.repo import Repo

    from lowrank.config import load_params

    params = load_params(ROOT / "params.yaml")
    checked = {}
    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            cmds = [stage.cmd] if isinstance(stage.cmd, str) else stage.cmd
            listed = {k for d in stage.deps if d.__class__.__name__ == "ParamsDependency" for k in d.params}
            for ref in (m for c in cmds for m in re.findall(r"\bparams:(\S+)", c)):
                missing = sorted(k for k in params_read(params, ref)
                                 if not any(k == p or k.startswith(p + ".") for p in listed))
                checked[stage.addressing] = missing
    assert len(checked) > 40
    assert {k: v for k, v in checked.items() if v} == {}


def test_params_read_follows_inherit_through_groups_and_profiles() -> None:
    params = {"grid": {"bases": {"d": [0]}, "sweeps": ["s"]}, "b0": {"x": 1}, "b1": {"inherit": "b0"},
              "b2": {"y": 2}, "s": {"d": {"inherit": "b1", "runs": {"r": {"paper": {"inherit": "b2"}}}}},
              "t": {"one": {"inherit": "b2"}}}
    assert params_read(params, "s.d_k0") == {"s.d", "b1", "b0", "b2"}
    assert params_read(params, "t.one") == {"t.one", "b2"}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _mini_project(tmp_path: Path) -> Path:
    _write(tmp_path / "pkg" / "__init__.py", "")
    _write(tmp_path / "pkg" / "__main__.py", "from .a import main\nmain()\n")
    _write(tmp_path / "pkg" / "a.py", "import json\n\ndef main():\n    from . import b   # function-local\n"
                                      "    from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                                      "    from pkg import never\n")
    _write(tmp_path / "pkg" / "b.py", "from helpers.util import f\n")
    _write(tmp_path / "pkg" / "never.py", "")
    _write(tmp_path / "helpers" / "util.py", "def f():\n    pass\n")   # a namespace package
    _write(tmp_path / "nb.ipynb", json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": ["%matplotlib inline\n", "!ls\n", "import pkg.b\n"]}]}))
    _write(tmp_path / "nbs" / "script_nb.py", '# %% [markdown]\n# # A jupytext notebook\n\n# %% tags=["parameters"]\n'
                                             'a = 1\n\n# %%\n# %matplotlib inline\nimport pkg.b\n')
    return tmp_path


def test_checker_reports_a_missing_dependency(tmp_path: Path) -> None:
    root = _mini_project(tmp_path)
    stage = Stage("run@x", ["mkdir -p out && python -m pkg --out out/x"], ["pkg/a.py", "pkg/__main__.py"], root)
    assert missing_deps(stage, root) == ["helpers/util.py", "pkg/__init__.py", "pkg/b.py"]
    assert missing_deps(Stage("ok", stage.cmds, ["pkg", "helpers"], root), root) == []
    nb = Stage("nb", ["python -m papermill nb.ipynb out.ipynb -p a 1"], ["nb.ipynb", "pkg/b.py"], root)
    assert missing_deps(nb, root) == ["helpers/util.py", "pkg/__init__.py"]
    assert "pkg/b.py" in format_findings({"run@x": missing_deps(stage, root), "run@y": missing_deps(stage, root)})


def test_checker_follows_a_jupytext_script_into_the_papermill_run(tmp_path: Path) -> None:
    root = _mini_project(tmp_path)
    cmd = ("mkdir -p build out && python -m jupytext --quiet --to ipynb nbs/script_nb.py -o build/nb.ipynb && "
           "python -m papermill build/nb.ipynb out/nb.ipynb -k python3 -p a 2")
    stage = Stage("nb", [cmd], ["nbs/script_nb.py", "pkg/b.py"], root)
    assert command_entries(stage)[1] == []
    assert missing_deps(stage, root) == ["helpers/util.py", "pkg/__init__.py"]
    assert missing_deps(Stage("nb", [cmd], ["pkg", "helpers"], root), root) == ["nbs/script_nb.py"]
    # the CLI without -o writes the notebook beside the script; converting alone runs nothing
    beside = Stage("nb", ["jupytext --to ipynb nbs/script_nb.py && papermill nbs/script_nb.ipynb o.ipynb"], [], root)
    assert missing_deps(beside, root) == ["helpers/util.py", "nbs/script_nb.py", "pkg/__init__.py", "pkg/b.py"]
    assert command_entries(Stage("c", ["jupytext --to ipynb nbs/script_nb.py"], [], root))[1]   # runs no code
    assert command_entries(Stage("p", ["jupytext --pipe black nbs/script_nb.py"], [], root))[1]


def test_checker_rejects_unrecognised_commands(tmp_path: Path) -> None:
    root = _mini_project(tmp_path)
    for cmd in ("mkdir -p out", "bash run.sh", "python -m pkg ; Rscript plot.R", "python -m some_tool"):
        assert command_entries(Stage("s", [cmd], [], root))[1], cmd
    assert command_entries(Stage("s", ["python -m pkg 2>/dev/null; echo done"], [], root))[1] == []


def test_foreach_stages_are_expanded_from_dvc_yaml(tmp_path: Path) -> None:
    root = _mini_project(tmp_path)
    (root / ".dvc").mkdir()
    _write(root / ".dvc" / "config", "[core]\n    no_scm = true\n")
    _write(root / "params.yaml", "sweep:\n  a: {n: 1}\n  b: {n: 2}\n")
    _write(root / "dvc.yaml", "stages:\n"
                              "  runs:\n    foreach: ${sweep}\n    do:\n"
                              "      cmd: python -m pkg params:sweep.${key}\n      deps: [pkg/a.py]\n"
                              "  listed:\n    foreach: [pkg, helpers]\n    do:\n"
                              "      cmd: python -m pkg ${item}\n      deps: [pkg, helpers]\n")
    found = {s.name: missing_deps(s, root) for s in load_stages(root)}
    assert set(found) == {"runs@a", "runs@b", "listed@pkg", "listed@helpers"}
    assert found["runs@a"] == found["runs@b"] == ["helpers/util.py", "pkg/__init__.py", "pkg/__main__.py", "pkg/b.py"]
    assert found["listed@pkg"] == found["listed@helpers"] == []


def test_checker_follows_scripts_spawned_modules_and_loads_by_name(tmp_path: Path) -> None:
    _write(tmp_path / "run.py", "import subprocess, sys\n\nfor name in ('job',):\n"
                                "    subprocess.run([sys.executable, '-m', f'tools.{name}'])\n")
    _write(tmp_path / "tools" / "__init__.py", "")
    _write(tmp_path / "tools" / "job.py", "import importlib\n\nimportlib.import_module('lib.core')\n")
    _write(tmp_path / "lib" / "__init__.py", "")
    _write(tmp_path / "lib" / "core.py", "")
    script = Stage("script", ["python -u run.py --x 1"], ["run.py"], tmp_path)
    assert missing_deps(script, tmp_path) == ["lib/__init__.py", "lib/core.py", "tools/__init__.py", "tools/job.py"]
    code = Stage("code", ['python -c "import lib.core; print(1)"'], ["lib/core.py"], tmp_path)
    assert missing_deps(code, tmp_path) == ["lib/__init__.py"]
