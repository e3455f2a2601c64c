"""Save a compressed model and load it onto a freshly built base model, without pickle.

>>> import tempfile, torch, torch.nn as nn, lowrank
>>> def build_base():
...     return nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
>>> model, _ = lowrank.compress(build_base(), method="svd", rank=4, targets=["0"])
>>> out = lowrank.save_compressed(model, tempfile.mkdtemp())
>>> sorted(f.name for f in out.iterdir())
['model.safetensors', 'structure.json']
>>> loaded = lowrank.load_compressed(build_base(), out)
>>> x = torch.randn(3, 16)
>>> type(loaded[0]).__name__, torch.equal(loaded(x), model.eval()(x))
('FactorizedLinear', True)

``structure.json`` records the factor structure — layer name → type and shape:

* ``factorized`` (:class:`~lowrank.layers.FactorizedLinear`, ``A·B``): ``in_features``, ``out_features``, ``rank``;
* ``low_rank`` (:class:`~lowrank.layers.LowRankLinear`, ``U S Vᵀ``): the same keys;
* ``tt`` (:class:`~lowrank.layers.TTLinear`): ``out_modes``, ``in_modes``, ``ranks`` (the bond ranks);

each with ``bias``. The weights (every tensor of ``model.state_dict()``: factors, the untouched layers,
buffers) go to ``model.safetensors`` through :func:`safetensors.torch.save_model`, which also handles
tied weights. :func:`load_compressed` first checks ``structure.json`` on its own against the
safetensors header (:func:`validate_compressed_files`: types, keys, bounded ranks, every factor tensor
present with the shape and a floating dtype the structure implies) — before it allocates anything —,
then the structure against the base model (each layer exists, is a Linear-like layer of the recorded
in/out size and bias) and every stored tensor against the rebuilt model, all before it changes
anything, and raises a ``ValueError`` naming the layer or key for every malformed input. Both files are
written atomically (temporary file + rename).

One call (:func:`from_pretrained`): ``structure.json`` also records the base model (:func:`base_recipe`):
for transformers the model's class (its configuration is the folder's ``config.json``), for timm the
model name and its ``create_model`` arguments (``save_compressed(..., base={"library": "timm", "name":
..., "args": {...}})``). :func:`from_pretrained` builds that model with random weights (the caller's
random state is left as it was) and :func:`load_compressed` replaces every weight, so
``lowrank.from_pretrained("out/")`` needs no base built by hand and no pickle.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from .layers import FactorizedLinear, LowRankLinear, TTLinear, is_linear_like, linear_shape
from .surgery import replace_module
from .tt import TTShape
from .utils import _atomic_path, atomic_write_json

__all__ = ["FORMAT", "WEIGHTS_FILE", "STRUCTURE_FILE", "compressed_structure", "save_compressed",
           "load_compressed", "apply_compressed_structure", "validate_compressed_files", "base_recipe", "build_base",
           "from_pretrained"]

FORMAT = "opfact-compressed/1"
WEIGHTS_FILE = "model.safetensors"
STRUCTURE_FILE = "structure.json"


def compressed_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Layer name → description of every factorised layer of ``model`` (module docstring)."""
    out: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if isinstance(m, (FactorizedLinear, LowRankLinear)):
            out[name] = {"type": "factorized" if isinstance(m, FactorizedLinear) else "low_rank",
                         "in_features": m.in_features, "out_features": m.out_features, "rank": m.rank,
                         "bias": m.bias is not None}
        elif isinstance(m, TTLinear):
            out[name] = {"type": "tt", "in_features": m.in_features, "out_features": m.out_features,
                         "out_modes": list(m.shape.out_modes), "in_modes": list(m.shape.in_modes),
                         "ranks": list(m.ranks), "bias": m.bias is not None}
    return out


def save_compressed(model: nn.Module, directory: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                    base: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``structure.json`` into ``directory`` (created); returns it.

    ``metadata`` (JSON-serialisable) is stored in ``structure.json`` beside the structure, e.g. the
    compression report. ``base`` records how to build the base model, so that
    :func:`lowrank.from_pretrained` loads the folder in one call: a Hugging Face model needs nothing
    (its class is recorded and its ``config.json`` written here); for timm pass
    ``base={"library": "timm", "name": <model name>, "args": {<create_model keyword arguments>}}``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    structure = compressed_structure(model)
    if not structure:
        raise ValueError(f"model ({type(model).__name__}) has no factorised layer (FactorizedLinear, LowRankLinear "
                         f"or TTLinear); compress it first (lowrank.compress) or save it with its own library")
    recipe = base_recipe(model, base)
    doc = {"format": FORMAT, "model_class": type(model).__name__, "layers": structure,
           "metadata": metadata or {}, **({"base": recipe} if recipe else {})}
    json.dumps(doc)  # refuse unserialisable metadata before writing anything half-done
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_model(model, str(tmp), metadata={"format": FORMAT})
    if recipe and recipe["library"] == "transformers":
        with _atomic_path(directory / "config.json") as tmp:
            model.config.to_json_file(str(tmp))
    atomic_write_json(directory / STRUCTURE_FILE, doc)
    return directory


def _read_structure(directory: Path) -> dict[str, Any]:
    path = directory / STRUCTURE_FILE
    if not path.is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise ValueError(f"directory={str(directory)!r} must hold {STRUCTURE_FILE} and {WEIGHTS_FILE} "
                         f"(written by lowrank.save_compressed)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:   # bad JSON, bad UTF-8, nesting deeper than the parser's stack
        raise ValueError(f"{path}: not a JSON structure file ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: format={got!r}; this version reads {FORMAT!r}")
    return doc


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _layer_tensors(name: str, spec: Any) -> dict[str, tuple[int, ...]]:
    """Key → shape of every tensor the layer ``name`` of the structure stores; ``ValueError`` for a
    malformed entry."""
    if not isinstance(spec, dict):
        raise ValueError(f"{name}: the layer's entry in {STRUCTURE_FILE} must be a mapping, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in ("factorized", "low_rank", "tt"):
        raise ValueError(f"{name}: layer type {kind!r} in {STRUCTURE_FILE}; allowed: 'factorized', 'low_rank', 'tt'")
    need = ("in_features", "out_features", "bias") + (("out_modes", "in_modes", "ranks") if kind == "tt" else ("rank",))
    missing = [k for k in need if k not in spec]
    if missing:
        raise ValueError(f"{name}: {kind} layer without {missing} in {STRUCTURE_FILE}; it needs {list(need)}")
    n, m, bias = spec["in_features"], spec["out_features"], spec["bias"]
    if not (_positive_int(n) and _positive_int(m) and isinstance(bias, bool)):
        raise ValueError(f"{name}: in_features={n!r}, out_features={m!r} must be positive ints and bias={bias!r} "
                         f"a bool")
    if kind == "factorized":   # two nn.Linear: down (no bias) and up (with the layer's bias)
        out = {f"{name}.up.bias": (m,)} if bias else {}
    else:
        out = {f"{name}.bias": (m,)} if bias else {}
    if kind != "tt":
        k = spec["rank"]
        if not _positive_int(k) or k > min(n, m):
            raise ValueError(f"{name}: rank={k!r} must be an int in [1, min(in, out)] = [1, {min(n, m)}]")
        if kind == "low_rank":
            return {**out, f"{name}.U": (m, k), f"{name}.S": (k, k), f"{name}.V": (n, k)}
        return {**out, f"{name}.down.weight": (k, n), f"{name}.up.weight": (m, k)}
    om, im, ranks = spec["out_modes"], spec["in_modes"], spec["ranks"]
    if not (isinstance(om, list) and isinstance(im, list) and isinstance(ranks, list) and om and len(om) == len(im)
            and len(ranks) == len(om) - 1 and all(_positive_int(v) for v in (*om, *im, *ranks))):
        raise ValueError(f"{name}: TT out_modes={om!r}, in_modes={im!r}, ranks={ranks!r} must be lists of positive "
                         f"ints, the modes of equal length d ≥ 1 and d − 1 ranks")
    if math.prod(om) != m or math.prod(im) != n:
        raise ValueError(f"{name}: TT modes {om} × {im} do not multiply to {m}×{n}")
    sizes = [a * b for a, b in zip(om, im)]
    for i, r in enumerate(ranks):
        # a bond rank beyond the smaller side of its unfolding adds nothing: the largest a TT-SVD gives
        bound = min(math.prod(sizes[:i + 1]), math.prod(sizes[i + 1:]))
        if r > bound:
            raise ValueError(f"{name}: TT bond rank {i + 1} = {r} exceeds {bound}, the size of the smaller side of "
                             f"its unfolding ({om} × {im})")
    r = (1, *ranks, 1)
    out.update({f"{name}.cores.{i}": (r[i], a, b, r[i + 1]) for i, (a, b) in enumerate(zip(om, im))})
    return out


def validate_compressed_files(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """``(structure document, stored key → shape)`` of a folder written by :func:`save_compressed`, after
    checking the structure on its own and every factor tensor it implies against the safetensors header
    (present, that shape, a floating dtype); reads no tensor data and allocates nothing. ``ValueError`` otherwise."""
    directory = Path(directory)
    doc = _read_structure(directory)
    layers = doc.get("layers")
    if not isinstance(layers, dict) or not layers:
        raise ValueError(f"{directory / STRUCTURE_FILE}: 'layers' must be a non-empty mapping of layer name → entry")
    try:
        with safe_open(str(directory / WEIGHTS_FILE), framework="pt") as fh:
            header = {k: (tuple(fh.get_slice(k).get_shape()), fh.get_slice(k).get_dtype()) for k in fh.keys()}
    except Exception as err:   # safetensors raises its own error types for a broken header
        raise ValueError(f"{directory / WEIGHTS_FILE}: not a readable safetensors file ({str(err)[:200]})") from None
    for name, spec in layers.items():
        for key, shape in _layer_tensors(name, spec).items():
            if key not in header:
                raise ValueError(f"{key}: the structure's {name} needs this tensor; {WEIGHTS_FILE} does not hold it")
            got, dtype = header[key]
            if got != shape:
                raise ValueError(f"{key}: stored shape {got}, the structure in {STRUCTURE_FILE} implies {shape}")
            if dtype not in ("F16", "BF16", "F32", "F64"):
                raise ValueError(f"{key}: stored dtype {dtype}; a factor must be a floating tensor (F16, BF16, F32, "
                                 f"F64)")
    return doc, {k: v[0] for k, v in header.items()}


def _shell(name: str, spec: dict[str, Any], old: nn.Module) -> nn.Module:
    kind = spec.get("type")
    if kind not in ("factorized", "low_rank", "tt"):
        raise ValueError(f"{name}: layer type {kind!r} in {STRUCTURE_FILE}; allowed: 'factorized', 'low_rank', 'tt'")
    if not is_linear_like(old):
        raise ValueError(f"{name}: the structure factorises this layer, but in the base model it is a "
                         f"{type(old).__name__}, not an nn.Linear (or Conv1D); build the same architecture as "
                         f"the saved model")
    n, m, bias = spec["in_features"], spec["out_features"], bool(spec["bias"])
    old_m, old_n = linear_shape(old)
    if (old_n, old_m) != (n, m) or (old.bias is not None) != bias:
        raise ValueError(f"{name}: the structure expects an nn.Linear {n}→{m} (bias={bias}), the base model has "
                         f"{old_n}→{old_m} (bias={old.bias is not None}); build the base "
                         f"model with the configuration of the saved one")
    kw = {"device": old.weight.device, "dtype": old.weight.dtype}
    if kind == "tt":
        shape = TTShape(tuple(spec["out_modes"]), tuple(spec["in_modes"]))
        if (shape.out_features, shape.in_features) != (m, n):
            raise ValueError(f"{name}: TT modes {spec['out_modes']} × {spec['in_modes']} do not multiply to {m}×{n}")
        return TTLinear(shape, tuple(spec["ranks"]), bias=bias, **kw)
    cls = FactorizedLinear if kind == "factorized" else LowRankLinear
    return cls(n, m, int(spec["rank"]), bias=bias, **kw)


def _build_shells(model: nn.Module, structure: dict[str, dict[str, Any]]) -> dict[str, nn.Module]:
    """Name → empty factorised shell for every recorded layer, each checked against ``model`` first."""
    modules = dict(model.named_modules())
    missing = [n for n in structure if n not in modules]
    if missing:
        raise ValueError(f"{', '.join(missing)}: the structure factorises "
                         f"{'a layer' if len(missing) == 1 else 'layers'} "
                         f"the base model does not have; build the same architecture as the saved model (some of "
                         f"its Linear names: {[n for n, mm in modules.items() if isinstance(mm, nn.Linear)][:6]})")
    # checked in the base model's order, so the first error is the first layer that does not fit
    return {name: _shell(name, structure[name], mod) for name, mod in modules.items() if name in structure}


def apply_compressed_structure(model: nn.Module, structure: dict[str, dict[str, Any]]) -> None:
    """Replace the named ``nn.Linear`` layers of ``model`` by empty factorised shells of the recorded
    shapes; every layer is checked before the first is replaced."""
    for name, new in _build_shells(model, structure).items():
        replace_module(model, name, new)


def load_compressed(base_model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Apply the saved factor structure to ``base_model`` (a freshly built model of the saved
    architecture; its weights are overwritten) and load the saved tensors; returns the model, in eval
    mode. Loads with safetensors only (no pickle)."""
    if not isinstance(base_model, nn.Module):
        raise ValueError(f"base_model must be an nn.Module, got {type(base_model).__name__}")
    directory = Path(directory)
    doc, stored = validate_compressed_files(directory)   # bounded: nothing is allocated from an unchecked structure
    structure = doc["layers"]
    # every check on shells and shapes before base_model changes
    shells = _build_shells(base_model, structure)
    expected: dict[str, tuple[int, ...]] = {k: tuple(v.shape) for k, v in base_model.state_dict().items()
                                            if k.rpartition(".")[0] not in structure}
    for name, shell in shells.items():
        expected.update({f"{name}.{k}": tuple(v.shape) for k, v in shell.state_dict().items()})
    first = next(base_model.parameters(), None)
    device = first.device if first is not None else "cpu"
    extra = [k for k in stored if k not in expected]
    for key, shape in [*((k, stored[k]) for k in expected if k in stored), *((k, stored[k]) for k in extra)]:
        if key not in expected:
            raise ValueError(f"{key}: stored tensor has no place in the base model with this structure; build the "
                             f"same architecture as the saved model")
        if expected[key] != shape:
            raise ValueError(f"{key}: stored shape {shape}, the base model with this structure has {expected[key]}; "
                             f"build the base model with the configuration of the saved one")
    # a tensor absent from the file is refused now, unless it is tied to one that is stored (save_model keeps one)
    groups: dict[int, list[str]] = {}
    for k, v in base_model.state_dict().items():
        if v.numel():
            groups.setdefault(v.data_ptr(), []).append(k)
    tied = {k: g for g in groups.values() if len(g) > 1 for k in g}
    absent = [k for k in expected if k not in stored and not any(t in stored for t in tied.get(k, ()))]
    if absent:
        raise ValueError(f"{directory / WEIGHTS_FILE}: does not hold {sorted(absent)[:8]}, which the base model with "
                         f"this structure needs")
    for name, new in shells.items():
        replace_module(base_model, name, new)
    missing, unexpected = load_model(base_model, str(directory / WEIGHTS_FILE), strict=False, device=str(device))
    if missing or unexpected:
        raise ValueError(f"{directory / WEIGHTS_FILE}: does not match the base model: missing {sorted(missing)[:8]}, "
                         f"unexpected {sorted(unexpected)[:8]}")
    return base_model.eval()


# ------------------------------------------------------------------------------ one call
_LIBRARIES = ("transformers", "timm")


def base_recipe(model: nn.Module, base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """What ``structure.json`` records to rebuild ``model``'s architecture: ``base`` checked, or for a
    transformers ``PreTrainedModel`` its class (the config is written beside it); ``None`` otherwise."""
    if base is not None:
        if not isinstance(base, dict) or base.get("library") not in _LIBRARIES:
            raise ValueError(f"base={base!r}; allowed: {{'library': 'timm', 'name': <model name>, 'args': {{...}}}} "
                             f"(a transformers model records itself)")
        if base["library"] == "timm":
            if not isinstance(base.get("name"), str) or not isinstance(base.get("args", {}), dict):
                raise ValueError(f"base={base!r}: a timm recipe needs 'name' (str) and 'args' (a dict of "
                                 f"create_model keyword arguments)")
            return {"library": "timm", "name": base["name"], "args": dict(base.get("args", {}))}
        if not _is_transformers(model):
            raise ValueError(f"base={base!r}: the model ({type(model).__name__}) is not a transformers model")
    if _is_transformers(model):
        return {"library": "transformers", "class": type(model).__name__}
    return None


def _is_transformers(model: nn.Module) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:   # transformers absent: the model cannot be one of its classes
        return False
    return isinstance(model, PreTrainedModel)


def build_base(directory: str | os.PathLike) -> nn.Module:
    """The base model of a folder written by :func:`lowrank.save_compressed` with a recorded ``base``."""
    directory = Path(directory)
    doc = _read_structure(directory)
    recipe = doc.get("base")
    if not recipe:
        raise ValueError(f"{directory}: structure.json records no base model (a model that is neither transformers "
                         f"nor saved with base=...); build it yourself and call lowrank.load_compressed(base, "
                         f"{str(directory)!r}), or save with base={{'library': 'timm', 'name': ..., 'args': ...}}")
    with torch.random.fork_rng(devices=[]):   # the random initialisation is overwritten; keep the caller's stream
        if recipe["library"] == "transformers":
            import transformers
            cls = getattr(transformers, recipe["class"], None)
            if cls is None:
                raise ValueError(f"{directory}: base class {recipe['class']!r} is not in transformers "
                                 f"{transformers.__version__}")
            config = transformers.AutoConfig.from_pretrained(str(directory), local_files_only=True)
            return cls(config)
        if recipe["library"] == "timm":
            import timm
            return timm.create_model(recipe["name"], pretrained=False, **recipe.get("args", {}))
    raise ValueError(f"{directory}: base library {recipe.get('library')!r}; allowed: {', '.join(_LIBRARIES)}")


def from_pretrained(directory: str | os.PathLike) -> nn.Module:
    """The compressed model saved in ``directory``, in eval mode, in one call (module docstring)."""
    return load_compressed(build_base(directory), directory)

