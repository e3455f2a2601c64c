"""Dataset registry: a name → builder map returning ``torch`` Datasets, plus loaders and helpers.

Usage::

    from lowrank.data import get_dataset, make_loader, calibration_subset
    from lowrank.utils import make_generator
    train = get_dataset("digits", "train", random_state=0)
    loader = make_loader(train, batch_size=128, shuffle=True, generator=make_generator(0))
    calib = calibration_subset(train, 256, random_state=0)      # Fisher / activation statistics

Two profiles (see ``params.yaml``):

* ``small`` — offline, CPU-sized stand-ins for the paper's tasks:

  - ``digits``: scikit-learn's 8×8 handwritten digits, items ``(x[1, 8, 8] in [0, 1], y)``, 10 classes,
    stratified 75/25 train/test split;
  - ``mnist1d``: the ``mnist1d`` package's procedurally generated 1-D digits (40 samples long),
    items ``(x[1, 40], y)``, 10 classes, stratified 80/20 split;
  - ``text``: the offline analogue of GLUE — paragraphs from the docstrings of six installed
    libraries, labelled by library (6 classes), stratified 70/15/15 train/validation/test split,
    tokenized items ``{"input_ids", "attention_mask", ["token_type_ids"], "labels"}``.

* ``paper`` — the paper's data, which needs downloads: ``cifar10`` (resized to 224, ViT
  normalization), ``imagenet`` (an ``ImageFolder`` tree) and ``glue:<task>`` (tokenized). When the
  data is neither on disk nor downloadable these raise :class:`DatasetUnavailable` whose message
  says, in one sentence, what is missing and how to provide it.

Image datasets yield ``(input, target)`` tuples; text datasets yield dicts whose ``"labels"`` key
matches the keyword of Hugging Face's classification heads. :func:`batch_targets` and
:func:`move_batch` hide the difference from a training loop.

The ``random_state`` argument fixes the train/test split (and nothing else): the same value always
gives the same split, on any machine with the same package versions.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import io
import json
import os
import random
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .utils import atomic_write_bytes, atomic_write_json, atomic_write_text, make_generator

__all__ = [
    "DatasetUnavailable",
    "DATASETS",
    "SPLITS",
    "GLUE_TASKS",
    "TEXT_LIBRARIES",
    "get_dataset",
    "num_classes",
    "make_loader",
    "collate_of",
    "calibration_subset",
    "batch_targets",
    "move_batch",
    "default_cache_dir",
    "ArrayDataset",
    "TokenizedTextDataset",
    "PadCollate",
    "digits_dataset",
    "mnist1d_arrays",
    "mnist1d_dataset",
    "build_text_corpus",
    "text_split_indices",
    "text_split",
    "text_dataset",
    "corpus_stats",
    "cifar10_dataset",
    "mnist_dataset",
    "imagenet_dataset",
    "glue_dataset",
]


class DatasetUnavailable(RuntimeError):
    """The data is neither on disk nor downloadable; the message says how to provide it."""


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------

SPLITS: dict[str, tuple[str, ...]] = {
    "digits": ("train", "test"),
    "mnist1d": ("train", "test"),
    "text": ("train", "validation", "test"),
    "cifar10": ("train", "test"),
    "mnist": ("train", "test"),
    "imagenet": ("train", "validation", "test"),
    "glue": ("train", "validation", "test"),
}


def _check_split(name: str, split: str) -> None:
    allowed = SPLITS[name]
    if split not in allowed:
        raise ValueError(f"split={split!r} is not a split of {name!r}; allowed values: {list(allowed)}")


def _check_random_state(random_state: int) -> None:
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative int, got {random_state!r}")


def _check_positive_int(param: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{param} must be an int >= {minimum}, got {value!r}")


def default_cache_dir() -> Path:
    """``$OPFACT_CACHE_DIR``, else ``$XDG_CACHE_HOME/opfact``, else ``~/.cache/opfact``."""
    explicit = os.environ.get("OPFACT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "opfact"


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return default_cache_dir() if cache_dir is None else Path(cache_dir)


def _stratified_split(labels: np.ndarray, fractions: Sequence[float], random_state: int) -> list[np.ndarray]:
    """Stratified partition of ``range(len(labels))`` into ``len(fractions)`` sorted index arrays."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    sizes = [int(round(f * n)) for f in fractions]
    remaining = np.arange(n)
    parts: list[np.ndarray] = []
    for size in sizes[:-1]:
        # integer sizes: a float share such as 0.7 * 5400 would round down to 3779
        take, remaining = train_test_split(
            remaining, train_size=size, stratify=labels[remaining], random_state=int(random_state)
        )
        parts.append(np.sort(take))
    parts.append(np.sort(remaining))
    return parts


# --------------------------------------------------------------------------------------------------
# small profile: digits, mnist1d
# --------------------------------------------------------------------------------------------------


class ArrayDataset(TensorDataset):
    """``(x, y)`` pairs from in-memory tensors; ``indices`` are the rows of the full source set."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, indices: np.ndarray, classes: Sequence[str]):
        super().__init__(x, y)
        self.indices = np.asarray(indices)
        self.classes = list(classes)

    @property
    def x(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def y(self) -> torch.Tensor:
        return self.tensors[1]


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    x.flags.writeable = False  # shared by every call through the cache
    y = bunch.target.astype(np.int64)
    y.flags.writeable = False
    return x, y


def digits_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                   test_fraction: float = 0.25) -> ArrayDataset:
    """scikit-learn's 1797 8×8 digits as ``(x[1, 8, 8], y)``; pixel values 0..16 scaled to [0, 1].

    The digits ship inside scikit-learn, so ``cache_dir`` is unused (kept for a uniform signature).
    """
    _check_split("digits", split)
    _check_random_state(random_state)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    x, y = _digits_arrays()
    train_idx, test_idx = _stratified_split(y, (1.0 - test_fraction, test_fraction), random_state)
    idx = train_idx if split == "train" else test_idx
    return ArrayDataset(
        torch.from_numpy(x[idx]).unsqueeze(1), torch.from_numpy(y[idx]), idx, [str(c) for c in range(10)]
    )


_MNIST1D_DEFAULT_SAMPLES = 5000


def mnist1d_arrays(cache_dir: str | os.PathLike | None = None, *, num_samples: int = _MNIST1D_DEFAULT_SAMPLES,
                   rebuild: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Generate (or read from the ``.npz`` cache) the full MNIST-1D set: ``x[N, 40]`` float32, ``y[N]``.

    The arrays come from ``mnist1d.data.make_dataset`` with the package's default generation
    parameters (its own fixed random state included), never from a download; only ``num_samples``
    changes (5000 is the package default; it must be a multiple of the 10 classes). The package's
    own 80/20 split is discarded: :func:`mnist1d_dataset` makes a stratified one.
    """
    _check_positive_int("num_samples", num_samples, minimum=100)
    if num_samples % 10:
        raise ValueError(f"num_samples must be a multiple of 10 (one share per class), got {num_samples!r}")
    version = importlib.metadata.version("mnist1d")
    path = _cache_dir(cache_dir) / f"mnist1d-{version}-n{num_samples}.npz"
    if path.exists() and not rebuild:
        with np.load(path) as f:
            return f["x"], f["y"]

    import mnist1d.data

    args = mnist1d.data.get_dataset_args()
    args.num_samples = int(num_samples)
    # make_dataset re-keys the global numpy and python generators; restore them so that building
    # the data never changes what the caller's own randomness produces
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = mnist1d.data.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    atomic_write_bytes(path, buf.getvalue())
    return x, y


def mnist1d_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                    num_samples: int = _MNIST1D_DEFAULT_SAMPLES, test_fraction: float = 0.2) -> ArrayDataset:
    """MNIST-1D as ``(x[1, 40], y)`` with a stratified train/test split fixed by ``random_state``."""
    _check_split("mnist1d", split)
    _check_random_state(random_state)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    x, y = mnist1d_arrays(cache_dir, num_samples=num_samples)
    train_idx, test_idx = _stratified_split(y, (1.0 - test_fraction, test_fraction), random_state)
    idx = train_idx if split == "train" else test_idx
    return ArrayDataset(
        torch.from_numpy(x[idx]).unsqueeze(1), torch.from_numpy(y[idx]), idx, [str(c) for c in range(10)]
    )


# --------------------------------------------------------------------------------------------------
# small profile: the offline text-classification corpus
# --------------------------------------------------------------------------------------------------

#: label i is TEXT_LIBRARIES[i]; import names (scikit-learn is imported as ``sklearn``)
TEXT_LIBRARIES: tuple[str, ...] = ("matplotlib", "numpy", "scipy", "sklearn", "torch", "transformers")
_DISTRIBUTIONS = {"sklearn": "scikit-learn"}
# bump when the extraction rules change, so that old caches are not reused
_CORPUS_FORMAT = 1
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


def text_split_indices(labels: Sequence[int], random_state: int = 0) -> dict[str, np.ndarray]:
    """Stratified 70/15/15 train/validation/test partition of the corpus rows (sorted indices)."""
    _check_random_state(random_state)
    parts = _stratified_split(np.asarray(labels), _TEXT_FRACTIONS, random_state)
    return dict(zip(SPLITS["text"], parts))


def text_split(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
               per_label: int = _TEXT_PER_LABEL) -> tuple[list[str], list[int]]:
    """Raw ``(texts, labels)`` of one split of the text corpus (for hidden-state statistics)."""
    _check_split("text", split)
    _check_random_state(random_state)
    records = build_text_corpus(cache_dir, per_label=per_label)
    idx = text_split_indices([r["label"] for r in records], random_state)[split]
    return [records[i]["text"] for i in idx], [records[i]["label"] for i in idx]


def corpus_stats(cache_dir: str | os.PathLike | None = None, *, random_state: int = 0,
                 per_label: int = _TEXT_PER_LABEL) -> dict[str, Any]:
    """Size, per-label / per-split counts and mean paragraph length (words) of the text corpus."""
    _check_random_state(random_state)
    records = build_text_corpus(cache_dir, per_label=per_label)
    labels = [r["label"] for r in records]
    splits = text_split_indices(labels, random_state)
    words = np.array([len(r["text"].split()) for r in records])
    return {
        "size": len(records),
        "labels": list(TEXT_LIBRARIES),
        "per_label": {lib: int(c) for lib, c in zip(TEXT_LIBRARIES, np.bincount(labels, minlength=len(TEXT_LIBRARIES)))},
        "per_split": {s: int(len(i)) for s, i in splits.items()},
        "per_split_label": {
            s: {lib: int(c) for lib, c in zip(TEXT_LIBRARIES, np.bincount(np.asarray(labels)[i], minlength=len(TEXT_LIBRARIES)))}
            for s, i in splits.items()
        },
        "mean_words": float(words.mean()),
        "min_words": int(words.min()),
        "max_words": int(words.max()),
        "versions": _library_versions(),
    }


class PadCollate:
    """Pads a list of token-dict items to the longest in the batch (padding is on the right).

    A class rather than a closure so that ``DataLoader(num_workers > 0)`` can pickle it.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, items: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        out: dict[str, torch.Tensor] = {}
        for key in items[0]:
            if key == "labels":
                out[key] = torch.stack([it[key] for it in items])
                continue
            fill = self.pad_token_id if key == "input_ids" else 0
            batch = torch.full((len(items), longest), fill, dtype=torch.long)
            for row, it in enumerate(items):
                batch[row, : len(it[key])] = it[key]
            out[key] = batch
        return out


class TokenizedTextDataset(Dataset):
    """Texts (or text pairs) tokenized once, unpadded; :attr:`collate_fn` pads each batch.

    Items are ``{"input_ids", "attention_mask", ["token_type_ids"], "labels"}`` (1-D long tensors,
    ``labels`` a 0-d long tensor, or float for a regression task such as GLUE STS-B).
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int | float], tokenizer: Any, *,
                 max_length: int = 128, text_pairs: Sequence[str] | None = None):
        _check_positive_int("max_length", max_length, minimum=8)
        if len(texts) != len(labels):
            raise ValueError(f"texts and labels must have the same length, got {len(texts)} and {len(labels)}")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"text_pairs must match texts in length, got {len(text_pairs)} and {len(texts)}")
        self.texts = list(texts)
        self.text_pairs = None if text_pairs is None else list(text_pairs)
        enc = tokenizer(self.texts, self.text_pairs, truncation=True, max_length=int(max_length))
        self.keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        self.encoded = {k: enc[k] for k in self.keys}
        is_float = any(isinstance(v, float) for v in labels)
        self.labels = torch.tensor(list(labels), dtype=torch.float32 if is_float else torch.long)
        self.max_length = int(max_length)
        pad_id = tokenizer.pad_token_id
        self.collate_fn = PadCollate(0 if pad_id is None else pad_id)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {k: torch.tensor(self.encoded[k][i], dtype=torch.long) for k in self.keys}
        item["labels"] = self.labels[i]
        return item


def _default_tokenizer(tokenizer: Any) -> Any:
    if tokenizer is None or isinstance(tokenizer, str):
        from .models import build_tokenizer  # lazy: only the text tasks need transformers

        return build_tokenizer("minilm" if tokenizer is None else tokenizer)
    return tokenizer


def text_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                 tokenizer: Any = None, max_length: int = 128,
                 per_label: int = _TEXT_PER_LABEL) -> TokenizedTextDataset:
    """One split of the text corpus, tokenized (default tokenizer: MiniLM's, see ``lowrank.models``)."""
    _check_split("text", split)
    _check_random_state(random_state)
    _check_positive_int("max_length", max_length, minimum=8)
    texts, labels = text_split(split, cache_dir=cache_dir, random_state=random_state, per_label=per_label)
    ds = TokenizedTextDataset(texts, labels, _default_tokenizer(tokenizer), max_length=max_length)
    ds.classes = list(TEXT_LIBRARIES)
    return ds


# --------------------------------------------------------------------------------------------------
# paper profile: cifar10, imagenet, glue
# --------------------------------------------------------------------------------------------------

# timm's vit_base_patch16_224 (augreg2_in21k_ft_in1k) pretrained config: mean = std = 0.5,
# bicubic resampling, centre crop of 0.9
_VIT_MEAN = (0.5, 0.5, 0.5)
_VIT_STD = (0.5, 0.5, 0.5)
_VIT_CROP_PCT = 0.9


def _vit_transform(image_size: int, *, resize_then_crop: bool, augment: bool):
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC
    steps: list[Any] = []
    if augment:
        steps += [T.RandomResizedCrop(image_size, interpolation=bicubic), T.RandomHorizontalFlip()]
    elif resize_then_crop:
        steps += [T.Resize(int(round(image_size / _VIT_CROP_PCT)), interpolation=bicubic), T.CenterCrop(image_size)]
    else:
        steps += [T.Resize((image_size, image_size), interpolation=bicubic)]
    steps += [T.ToTensor(), T.Normalize(_VIT_MEAN, _VIT_STD)]
    return T.Compose(steps)


def cifar10_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                    root: str | os.PathLike | None = None, download: bool = True, image_size: int = 224,
                    augment: bool = False, verify_integrity: bool = True) -> Dataset:
    """torchvision's CIFAR-10 (``root/cifar-10-batches-py``), upsampled to ``image_size`` for ViT-B/16.

    ``verify_integrity=False`` skips torchvision's MD5 checks of the batch files (it then only
    needs them to exist); it exists for re-packed copies and small stand-ins, which can never
    match the official checksums. ``random_state`` is unused: CIFAR-10 ships its own split.
    """
    _check_split("cifar10", split)
    _check_random_state(random_state)
    _check_positive_int("image_size", image_size, minimum=8)
    from torchvision.datasets import CIFAR10

    root = Path(root) if root is not None else _cache_dir(cache_dir) / "cifar10"
    cls = CIFAR10 if verify_integrity else _unchecked_cifar10_class()
    transform = _vit_transform(image_size, resize_then_crop=False, augment=augment and split == "train")
    try:
        return cls(str(root), train=split == "train", transform=transform, download=False)
    except RuntimeError as missing:
        if not download:
            raise DatasetUnavailable(
                f"CIFAR-10 not found (or not matching torchvision's checksums) under {root} and download=False; "
                f"pass download=True on a machine with internet, or copy the extracted cifar-10-batches-py folder "
                f"there and pass root=..."
            ) from missing
    try:
        return cls(str(root), train=split == "train", transform=transform, download=True)
    except (OSError, RuntimeError, ValueError) as failed:
        raise DatasetUnavailable(
            f"CIFAR-10 not found under {root} and could not be downloaded ({type(failed).__name__}: no network?); "
            f"download it on a machine with internet and pass root=<folder holding cifar-10-batches-py>"
        ) from failed


def mnist_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                  root: str | os.PathLike | None = None, download: bool = True) -> ArrayDataset:
    """torchvision's MNIST (``root/MNIST/raw``) as ``(x[1, 28, 28] in [0, 1], y)``, its own 60k / 10k split.

    The paper profile's dataset of the tenBCD study (the companion paper, arXiv 2303.06815, trains
    MLPs on MNIST). ``random_state`` is unused: MNIST ships its split. Offline, copy the four raw
    ``*-idx?-ubyte`` files into ``root/MNIST/raw`` and pass ``download=False``.
    """
    _check_split("mnist", split)
    _check_random_state(random_state)
    from torchvision.datasets import MNIST

    root = Path(root) if root is not None else _cache_dir(cache_dir) / "mnist"
    try:
        ds = MNIST(str(root), train=split == "train", download=False)
    except RuntimeError as missing:
        if not download:
            raise DatasetUnavailable(
                f"MNIST not found under {root / 'MNIST' / 'raw'} and download=False; pass download=True on a "
                f"machine with internet, or copy the four raw idx files there") from missing
        try:
            ds = MNIST(str(root), train=split == "train", download=True)
        except (OSError, RuntimeError, ValueError) as failed:
            raise DatasetUnavailable(
                f"MNIST not found under {root} and could not be downloaded ({type(failed).__name__}: no network?); "
                f"download it on a machine with internet and pass root=<folder holding MNIST/raw>") from failed
    x = ds.data.to(torch.float32).div(255.0).unsqueeze(1)
    y = ds.targets.to(torch.int64)
    return ArrayDataset(x, y, np.arange(len(y)), [str(c) for c in range(10)])


def _unchecked_cifar10_class() -> type:
    from torchvision.datasets import CIFAR10

    class UncheckedCIFAR10(CIFAR10):
        # torchvision's check_integrity(path, None) only tests that the file exists
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return UncheckedCIFAR10


def imagenet_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                     root: str | os.PathLike | None = None, image_size: int = 224,
                     augment: bool = False) -> Dataset:
    """ImageNet-2012 as a torchvision ``ImageFolder``: ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``.

    Evaluation transform: bicubic resize to ``image_size / 0.9``, centre crop, ViT normalization
    (timm's pretrained config for ViT-B/16). ``random_state`` is unused: ImageNet ships its split.
    ``"validation"`` and ``"test"`` both read ``val/``: ImageNet's test labels were never released,
    so the validation set is what papers, this one included, report as test accuracy.
    """
    _check_split("imagenet", split)
    _check_random_state(random_state)
    _check_positive_int("image_size", image_size, minimum=8)
    from torchvision.datasets import ImageFolder

    root = Path(root) if root is not None else _cache_dir(cache_dir) / "imagenet"
    folder = root / ("train" if split == "train" else "val")
    has_classes = folder.is_dir() and any(p.is_dir() for p in folder.iterdir())
    if not has_classes:
        raise DatasetUnavailable(
            f"ImageNet {split} images not found: expected one folder per class under {folder}; ImageNet cannot be "
            f"downloaded automatically, so get ILSVRC2012 from image-net.org, extract train/ and val/ as one "
            f"folder per class (wnid) and pass root=<folder holding train and val>"
        )
    transform = _vit_transform(image_size, resize_then_crop=True, augment=augment and split == "train")
    return ImageFolder(str(folder), transform=transform)


@dataclass(frozen=True)
class GlueTask:
    text_key: str
    pair_key: str | None
    num_labels: int  # 1 = regression (STS-B)


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("sentence", None, 2),
    "sst2": GlueTask("sentence", None, 2),
    "mrpc": GlueTask("sentence1", "sentence2", 2),
    "qqp": GlueTask("question1", "question2", 2),
    "stsb": GlueTask("sentence1", "sentence2", 1),
    "mnli": GlueTask("premise", "hypothesis", 3),
    "qnli": GlueTask("question", "sentence", 2),
    "rte": GlueTask("sentence1", "sentence2", 2),
    "wnli": GlueTask("sentence1", "sentence2", 2),
}
_GLUE_HUB_ID = "nyu-mll/glue"  # where the Hub keeps GLUE now; the legacy name "glue" redirects here
_DATA_FILE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def glue_dataset(split: str, *, task: str, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                 tokenizer: Any = None, max_length: int = 128,
                 data_files: Mapping[str, str | os.PathLike] | None = None) -> TokenizedTextDataset:
    """A GLUE task, tokenized like the text corpus (``"labels"`` float for STS-B, else class ids).

    By default the task comes from the Hugging Face Hub (``datasets.load_dataset("nyu-mll/glue",
    task)``, cached in the usual Hugging Face cache). ``data_files`` maps split names to local CSV /
    JSON / parquet files with GLUE's columns and goes through the same tokenization; those are
    prepared under ``cache_dir``. MNLI's ``validation`` / ``test`` mean the *matched* sets. GLUE's
    test labels are hidden (-1), so the paper's scores are on ``validation``.
    """
    if task not in GLUE_TASKS:
        raise ValueError(f"task={task!r} is not a GLUE task; allowed values: {sorted(GLUE_TASKS)}")
    _check_split("glue", split)
    _check_random_state(random_state)
    _check_positive_int("max_length", max_length, minimum=8)
    spec = GLUE_TASKS[task]
    hf_split = f"{split}_matched" if task == "mnli" and split != "train" else split

    import datasets

    if data_files is not None:
        if split not in data_files:
            raise ValueError(f"data_files has no entry for split={split!r}; it has {sorted(data_files)}")
        suffix = Path(data_files[split]).suffix.lower()
        if suffix not in _DATA_FILE_FORMATS:
            raise ValueError(f"data_files[{split!r}] must end in one of {sorted(_DATA_FILE_FORMATS)}, got {suffix!r}")
        hf = datasets.load_dataset(
            _DATA_FILE_FORMATS[suffix], data_files={hf_split: str(data_files[split])}, split=hf_split,
            cache_dir=str(_cache_dir(cache_dir) / "hf-datasets"),
        )
    else:
        try:
            hf = datasets.load_dataset(_GLUE_HUB_ID, task, split=hf_split)
        except OSError as failed:  # ConnectionError, and DatasetNotFoundError via FileNotFoundError
            raise DatasetUnavailable(
                f"GLUE task {task!r} is not in the local Hugging Face datasets cache and could not be downloaded "
                f"(no network or offline mode); run datasets.load_dataset({_GLUE_HUB_ID!r}, {task!r}) once on a "
                f"machine with internet and reuse its HF_HOME cache, or pass data_files={{split: local file}}"
            ) from failed
    missing = [k for k in (spec.text_key, spec.pair_key, "label") if k is not None and k not in hf.column_names]
    if missing:
        raise ValueError(f"GLUE {task!r} data lacks columns {missing}; it has {hf.column_names}")
    labels = [float(v) for v in hf["label"]] if spec.num_labels == 1 else [int(v) for v in hf["label"]]
    ds = TokenizedTextDataset(
        hf[spec.text_key], labels, _default_tokenizer(tokenizer), max_length=max_length,
        text_pairs=None if spec.pair_key is None else hf[spec.pair_key],
    )
    ds.task = task
    return ds


# --------------------------------------------------------------------------------------------------
# registry and loaders
# --------------------------------------------------------------------------------------------------

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits_dataset,
    "mnist1d": mnist1d_dataset,
    "text": text_dataset,
    "cifar10": cifar10_dataset,
    "mnist": mnist_dataset,
    "imagenet": imagenet_dataset,
    "glue": glue_dataset,
}

_NUM_CLASSES = {"digits": 10, "mnist1d": 10, "text": len(TEXT_LIBRARIES), "cifar10": 10, "mnist": 10,
                "imagenet": 1000}


def _parse_name(name: str) -> tuple[str, str | None]:
    if not isinstance(name, str):
        raise ValueError(f"name must be a str, got {name!r}")
    base, _, task = name.partition(":")
    allowed = sorted(DATASETS) + [f"glue:{t}" for t in sorted(GLUE_TASKS)]
    if base not in DATASETS or (base == "glue") != bool(task) or (task and task not in GLUE_TASKS):
        raise ValueError(f"name={name!r} is not a known dataset; allowed values: {allowed}")
    return base, task or None


def get_dataset(name: str, split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                **kwargs: Any) -> Dataset:
    """Build dataset ``name`` (``"digits"``, ``"glue:sst2"``, ...) for ``split``; ``kwargs`` go to its builder."""
    base, task = _parse_name(name)
    _check_split(base, split)
    if task is not None:
        kwargs["task"] = task
    return DATASETS[base](split, cache_dir=cache_dir, random_state=random_state, **kwargs)


def num_classes(name: str) -> int:
    """Number of classes (1 for the GLUE regression task STS-B) of a registered dataset."""
    base, task = _parse_name(name)
    return GLUE_TASKS[task].num_labels if task is not None else _NUM_CLASSES[base]


def collate_of(dataset: Dataset) -> Callable | None:
    """The dataset's own ``collate_fn`` (looking through ``Subset`` wrappers), or ``None``."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return getattr(dataset, "collate_fn", None)




def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, num_workers: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A ``DataLoader`` using the dataset's own ``collate_fn`` when it has one (text padding).

    Shuffling always draws from a private generator — ``make_generator(0)`` unless one is given —
    so the batch order never depends on the global torch state.
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("num_workers", num_workers, minimum=0)
    if shuffle and generator is None:
        generator = make_generator(0)
    return DataLoader(
        dataset, batch_size=int(batch_size), shuffle=shuffle, generator=generator if shuffle else None,
        num_workers=int(num_workers), drop_last=drop_last, collate_fn=collate_of(dataset),
    )


def calibration_subset(dataset: Dataset, n: int, random_state: int = 0) -> Subset:
    """``n`` distinct items drawn uniformly without replacement (sorted indices), e.g. for Fisher estimates."""
    _check_positive_int("n", n)
    _check_random_state(random_state)
    if n > len(dataset):
        raise ValueError(f"n must be at most len(dataset)={len(dataset)}, got {n}")
    rng = np.random.default_rng(int(random_state))
    idx = np.sort(rng.choice(len(dataset), size=int(n), replace=False))
    return Subset(dataset, idx.tolist())


def batch_targets(batch: Any) -> torch.Tensor:
    """The targets of a batch from any dataset here: ``batch[1]`` for tuples, ``batch["labels"]`` for dicts."""
    if isinstance(batch, Mapping):
        if "labels" not in batch:
            raise ValueError(f"batch has no 'labels' key; it has {sorted(batch)}")
        return batch["labels"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[1]
    raise ValueError(f"batch must be an (inputs, targets) pair or a dict with 'labels', got {type(batch).__name__}")


def move_batch(batch: Any, device: str | torch.device) -> Any:
    """The batch with every tensor moved to ``device`` (tuples, lists and dicts are rebuilt)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_batch(v, device) for v in batch)
    return batch
