"""Load a compressed folder in one call: build the base model from what the folder records, apply the factors.

    model, report = lowrank.compress(hf_model, method="fwsvd", params_fraction=0.25, calibration=loader)
    lowrank.save_compressed(model, "out/")                # + config.json for a Hugging Face model
    model = lowrank.from_pretrained("out/")               # no pickle, no base built by hand

    lowrank.save_compressed(timm_model, "out/", base={"library": "timm", "name": "convnext_tiny",
                                                     "args": {"num_classes": 10}})

``structure.json`` gets a ``base`` entry (:func:`base_recipe`): for transformers the model's class name
(its configuration is the folder's ``config.json``), for timm the model name and its
``create_model`` arguments. :func:`from_pretrained` builds that model with random weights (the global
random state is left as it was), then :func:`lowrank.load_compressed` replaces the factorised layers
and loads every stored tensor, so the built weights never matter.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = ["base_recipe", "build_base", "from_pretrained"]

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
    from .serialization import _read_structure

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
    from .serialization import load_compressed

    return load_compressed(build_base(directory), directory)

