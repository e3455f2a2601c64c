"""The offline text corpus: docstring paragraphs of six installed libraries, labelled by library.

The small profile's stand-in for GLUE needs no download: :func:`build_text_corpus` parses the
sources of the libraries in :data:`TEXT_LIBRARIES` (no import), keeps prose paragraphs, balances the
classes and caches the result per set of library versions; :func:`text_split_indices` makes the
70/15/15 train/validation/test partition, stratified by label and grouped by source file. The tokenized
dataset built on it is :func:`lowrank.data.small.text_dataset`.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..utils import atomic_write_json, atomic_write_text
from .base import DatasetUnavailable, _cache_dir, _check_positive_int, _check_random_state, _stratified_split
from .registry import _check_split

__all__ = ["TEXT_LIBRARIES", "TEXT_SPLITS", "build_text_corpus", "text_split_indices", "text_split", "corpus_stats"]

#: label i is TEXT_LIBRARIES[i]; import names (scikit-learn is imported as ``sklearn``)
TEXT_LIBRARIES: tuple[str, ...] = ("matplotlib", "numpy", "scipy", "sklearn", "torch", "transformers")
_DISTRIBUTIONS = {"sklearn": "scikit-learn"}
# bump when the extraction rules change, so that old caches are not reused
_CORPUS_FORMAT = 1
#: the corpus's splits, stratified with the shares _TEXT_FRACTIONS
TEXT_SPLITS: tuple[str, ...] = ("train", "validation", "test")
_TEXT_FRACTIONS = (0.70, 0.15, 0.15)
_TEXT_PER_LABEL = 900
_TEXT_MIN_WORDS, _TEXT_MAX_WORDS = 20, 120

# vendored third-party code would carry another project's prose under this library's label
_SKIP_DIRS = frozenset({
    "tests", "test", "testing", "externals", "_vendor", "vendor", "vendored", "_vendored",
    "array_api_compat", "array_api_extra", "benchmarks",
})
# numpy and torch attach most of their reference docs at import time through these calls
_DOC_CALLS = frozenset({"add_newdoc", "add_newdoc_ufunc", "add_docstr", "_add_docstr"})
_UNDERLINE = re.compile(r"^[-=~^*+#`'\"]{3,}$")
_SECTION = re.compile(r"^[A-Z][A-Za-z ]{0,30}:?$")
_CODE_STARTS = (">>>", "...", ".. ", "- ", "* ", "+ ", "|", "#", "$")


def _prose_paragraphs(doc: str) -> Iterable[str]:
    """Blank-line separated paragraphs of a docstring that read as prose, whitespace-normalised.

    A paragraph is kept when, after dropping a leading section header (numpy ``Notes\\n-----`` or
    Google ``Note:``), all its lines share one indentation (hanging indents mark parameter tables,
    bullet continuations and code blocks), no line looks like code / doctest / an rST directive or
    list item, it has 20-120 words, starts with a capital letter and ends with a full stop, and at
    least 80% of its characters are letters or spaces.
    """
    for para in re.split(r"\n[ \t]*\n", inspect.cleandoc(doc)):
        lines = [ln for ln in para.split("\n") if ln.strip()]
        if len(lines) >= 2 and _UNDERLINE.match(lines[1].strip()) and _SECTION.match(lines[0].strip()):
            lines = lines[2:]
        elif lines and lines[0].strip().endswith(":") and _SECTION.match(lines[0].strip()):
            lines = lines[1:]
        if not lines or len({len(ln) - len(ln.lstrip()) for ln in lines}) != 1:
            continue
        stripped = [ln.strip() for ln in lines]
        if any(s.startswith(_CODE_STARTS) or _UNDERLINE.match(s) for s in stripped):
            continue
        text = " ".join(" ".join(stripped).split())
        if not _TEXT_MIN_WORDS <= len(text.split()) <= _TEXT_MAX_WORDS:
            continue
        if not (text[0].isupper() and text.endswith(".")):
            continue
        if sum(c.isalpha() or c == " " for c in text) < 0.8 * len(text):
            continue
        yield text


def _docstrings(tree: ast.AST) -> Iterable[str]:
    """Docstrings in source order; only statements are visited (a full ``ast.walk`` into every
    expression costs more than the parse itself)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield doc
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            fname = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if fname in _DOC_CALLS:
                for arg in node.value.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "\n" in arg.value:
                        yield arg.value
        children: list[ast.AST] = []
        for field in ("body", "handlers", "orelse", "finalbody", "cases"):
            value = getattr(node, field, None)
            if isinstance(value, list):
                children.extend(value)
        stack.extend(reversed(children))


def _library_files(library: str) -> tuple[Path, list[Path]]:
    spec = importlib.util.find_spec(library)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable(
            f"the text corpus needs the installed package {library!r}, which was not found; "
            f"install the project's pinned requirements"
        )
    root = Path(list(spec.submodule_search_locations)[0])
    files = [
        f for f in root.rglob("*.py")
        if not (set(f.relative_to(root).parts[:-1]) & _SKIP_DIRS) and not f.name.startswith("test_")
    ]
    # a hash order spreads an early stop over the whole package rather than its first subpackages
    files.sort(key=lambda f: hashlib.sha256(f.relative_to(root).as_posix().encode()).hexdigest())
    return root, files


def _library_pool(library: str, target: int) -> dict[str, str]:
    """Unique prose paragraphs of one library → source file, in scan order, stopping at ``target``."""
    root, files = _library_files(library)
    pool: dict[str, str] = {}
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences in third-party sources
                tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        rel = path.relative_to(root).as_posix()
        for doc in _docstrings(tree):
            for para in _prose_paragraphs(doc):
                pool.setdefault(para, rel)
        if len(pool) >= target:
            break
    return pool


def _map_libraries(fn: Callable[[str, int], dict[str, str]], libraries: Sequence[str], target: int) -> list:
    """``fn`` over the libraries, in worker processes when there are cores to spare (each library's
    pool is independent, so the result does not depend on the number of workers)."""
    import multiprocessing

    workers = min(len(libraries), os.cpu_count() or 1)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(lib, target) for lib in libraries]
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers only parse source files, and a spawned worker would re-import torch
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(fn, libraries, [target] * len(libraries)))


def _library_versions() -> dict[str, str]:
    return {lib: importlib.metadata.version(_DISTRIBUTIONS.get(lib, lib)) for lib in TEXT_LIBRARIES}


def _corpus_path(cache_dir: Path, per_label: int) -> Path:
    key = json.dumps(
        {"format": _CORPUS_FORMAT, "per_label": per_label, "words": [_TEXT_MIN_WORDS, _TEXT_MAX_WORDS],
         "versions": _library_versions()},
        sort_keys=True,
    )
    return cache_dir / f"text-corpus-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl"


def build_text_corpus(cache_dir: str | os.PathLike | None = None, *, per_label: int = _TEXT_PER_LABEL,
                      rebuild: bool = False) -> list[dict[str, Any]]:
    """The labelled paragraph corpus, built once per set of installed library versions and cached.

    Records are ``{"text", "label", "library", "source"}`` sorted by label, then scan order. Build
    rule, fully deterministic for fixed package versions:

    1. for each library in :data:`TEXT_LIBRARIES`, parse its ``.py`` files with :mod:`ast` (no
       import), skipping test and vendored directories, in the order of the SHA-256 of their
       package-relative path; collect the docstrings of modules, classes and functions plus the
       strings passed to numpy's ``add_newdoc`` / torch's ``add_docstr``;
    2. keep prose paragraphs (:func:`_prose_paragraphs`), deduplicated within the library (first
       occurrence wins), stopping once ``1.1 * per_label`` are collected;
    3. drop every paragraph collected for more than one library (its label would be ambiguous);
    4. keep the first ``n = min(per_label, smallest library pool)`` of each library, so that classes
       are exactly balanced.

    The cache file name hashes the library versions, ``per_label`` and the rules' format number,
    so an upgrade rebuilds instead of reusing a stale corpus.
    """
    _check_positive_int("per_label", per_label, minimum=10)
    path = _corpus_path(_cache_dir(cache_dir), per_label)
    if path.exists() and not rebuild:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    # cross-library duplicates are rare (two numpy/scipy FFT paragraphs with the pinned versions),
    # so a 10% margin keeps every class full without scanning further than needed
    target = per_label + per_label // 10
    pools = dict(zip(TEXT_LIBRARIES, _map_libraries(_library_pool, TEXT_LIBRARIES, target)))
    owners = Counter(text for pool in pools.values() for text in pool)
    for lib in TEXT_LIBRARIES:
        pools[lib] = {t: src for t, src in pools[lib].items() if owners[t] == 1}
    n = min(per_label, *(len(pool) for pool in pools.values()))
    records = [
        {"text": text, "label": label, "library": lib, "source": src}
        for label, lib in enumerate(TEXT_LIBRARIES)
        for text, src in list(pools[lib].items())[:n]
    ]
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    atomic_write_json(path.with_suffix(".meta.json"), {
        "format": _CORPUS_FORMAT, "per_label_requested": per_label, "per_label": n,
        "versions": _library_versions(), "libraries": list(TEXT_LIBRARIES), "size": len(records),
    })
    return records


def text_split_indices(labels: Sequence[int], random_state: int = 0,
                       groups: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """70/15/15 train/validation/test partition of the corpus rows (sorted indices), stratified by label.

    Without ``groups``: an exact stratified split of the rows. With ``groups`` (one name per row, e.g. its
    source file, as :func:`text_split` passes): a *grouped* split — no group has rows in two splits, so
    paragraphs of one file (often near-paraphrases: a class's docstring and its methods') never sit on both
    sides of the train / test line. Per label, the label's groups are shuffled (seeded by
    ``random_state``) and each is given, whole, to the first split whose cumulative share of the label's
    rows is not yet reached; the shares then hold to within the size of one group.
    """
    _check_random_state(random_state)
    labels = np.asarray(labels)
    if groups is None:
        parts = _stratified_split(labels, _TEXT_FRACTIONS, random_state)
        return dict(zip(TEXT_SPLITS, parts))
    groups = np.asarray(groups, dtype=object)
    if groups.shape != labels.shape:
        raise ValueError(f"groups has {groups.size} entries for {labels.size} labels; give one group per row")
    rng = np.random.default_rng(random_state)
    chosen: dict[str, list[np.ndarray]] = {s: [] for s in TEXT_SPLITS}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        names, inverse = np.unique(groups[rows].astype(str), return_inverse=True)   # sorted: seed-only order
        bounds = np.cumsum(_TEXT_FRACTIONS)[:-1] * rows.size
        filled = 0
        for g in rng.permutation(names.size):
            members = rows[inverse == g]
            chosen[TEXT_SPLITS[int(np.searchsorted(bounds, filled, side="right"))]].append(members)
            filled += members.size
    out = {s: np.sort(np.concatenate(v)) if v else np.array([], dtype=np.int64) for s, v in chosen.items()}
    empty = [s for s, v in out.items() if v.size == 0]
    if empty:
        raise ValueError(f"grouped text split: split(s) {empty} got no group; too few groups per label")
    return out


def text_split(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
               per_label: int = _TEXT_PER_LABEL) -> tuple[list[str], list[int]]:
    """Raw ``(texts, labels)`` of one split of the text corpus, grouped by source file
    (:func:`text_split_indices`): no file's paragraphs in two splits."""
    _check_split("text", split)
    _check_random_state(random_state)
    records = build_text_corpus(cache_dir, per_label=per_label)
    idx = text_split_indices([r["label"] for r in records], random_state, groups=_source_groups(records))[split]
    return [records[i]["text"] for i in idx], [records[i]["label"] for i in idx]


def _source_groups(records: Sequence[dict[str, Any]]) -> list[str]:
    # package-relative paths repeat across libraries (every package has an __init__.py): key by both
    return [f"{r['library']}/{r['source']}" for r in records]


def corpus_stats(cache_dir: str | os.PathLike | None = None, *, random_state: int = 0,
                 per_label: int = _TEXT_PER_LABEL) -> dict[str, Any]:
    """Size, per-label / per-split counts and mean paragraph length (words) of the text corpus."""
    _check_random_state(random_state)
    records = build_text_corpus(cache_dir, per_label=per_label)
    labels = [r["label"] for r in records]
    splits = text_split_indices(labels, random_state, groups=_source_groups(records))
    words = np.array([len(r["text"].split()) for r in records])
    return {
        "size": len(records),
        "labels": list(TEXT_LIBRARIES),
        "per_label": {lib: int(c) for lib, c in zip(TEXT_LIBRARIES,
                                                    np.bincount(labels, minlength=len(TEXT_LIBRARIES)))},
        "per_split": {s: int(len(i)) for s, i in splits.items()},
        "per_split_label": {
            s: {lib: int(c) for lib, c in zip(TEXT_LIBRARIES,
                                              np.bincount(np.asarray(labels)[i], minlength=len(TEXT_LIBRARIES)))}
            for s, i in splits.items()
        },
        "mean_words": float(words.mean()),
        "min_words": int(words.min()),
        "max_words": int(words.max()),
        "versions": _library_versions(),
    }
