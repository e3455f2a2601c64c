"""Compress a model checkpoint on disk: ``python -m lowrank compress``.

    python -m lowrank compress --model vit_tiny_patch16_224 --weights vit.safetensors \\
        --model-args '{"num_classes": 10}' --method fwsvd --params-fraction 0.25 --calibration cifar10 --out DIR
    python -m lowrank compress --model path/to/hf_model_dir --method svd --params-fraction 0.5 --out DIR

``--model`` is a Hugging Face model folder (one with a ``config.json``, loaded offline with the ``Auto``
class its ``architectures`` name: a ``…ForSequenceClassification`` head, a causal LM head, else the bare
encoder) or a
timm model name (built by ``timm.create_model`` with ``--model-args``; weights from ``--weights``, a
safetensors state dict, or timm's own ``--pretrained`` download / cache; neither: random weights,
said so in the report). ``--calibration`` is a dataset of the library's registry (``digits``,
``mnist1d``, ``text``, ``cifar10``, ``glue:<task>``, …; text is tokenized with the HF folder's own
tokenizer when it has one) or a ``.safetensors`` file of named tensors: ``inputs`` (+ ``labels``) for
tensor batches, or ``input_ids`` (+ ``attention_mask``, ``token_type_ids``, ``labels``) for token batches.

``DIR`` receives the compressed model (:func:`lowrank.save_compressed`: ``model.safetensors`` +
``structure.json``, with the base recorded so that ``lowrank.from_pretrained(DIR)`` loads it) and ``report.json``: the compression report (:class:`lowrank.api.CompressResult`),
where the model came from, and the inference speed of the compressed model against the dense one on
this machine — the median of ``--repeats`` timed forward passes of one calibration batch each,
alternating the two models so that drift in the machine's speed affects both alike.
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .api import _CALIBRATED, _describe_batch, _move, compress, validate_compress_arguments
from .fisher import default_forward, encoder_forward
from .serialization import save_compressed
from .utils import atomic_write_json

__all__ = ["load_model_from", "calibration_batches", "inference_speedup", "compress_checkpoint"]

_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def load_model_from(model: str, *, model_args: dict[str, Any] | None = None, weights: str | None = None,
                    pretrained: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, source)``: a Hugging Face folder or a timm name (module docstring); ``source`` says which."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"--model {model!r} is a folder without a config.json; allowed: a Hugging Face model "
                             f"folder (save_pretrained) or a timm model name")
        if weights is not None or pretrained or model_args:
            raise ValueError("--weights / --pretrained / --model-args apply to timm names; a Hugging Face folder "
                             "holds its own weights and config")
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        archs = list(getattr(config, "architectures", None) or [])
        cls = AutoModelForSequenceClassification if any(a.endswith("ForSequenceClassification") for a in archs) \
            else AutoModelForCausalLM if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) \
            else AutoModel
        net = cls.from_pretrained(str(path), local_files_only=True)
        return net.eval(), {"kind": "huggingface", "path": str(path), "class": type(net).__name__}
    import timm
    if not timm.is_model(model):
        raise ValueError(f"--model {model!r} is neither a folder with a config.json nor a timm model name "
                         f"(timm.list_models() lists them)")
    net = timm.create_model(model, pretrained=pretrained, **(model_args or {}))
    source = {"kind": "timm", "name": model, "model_args": model_args or {},
              "weights": weights if weights else ("timm pretrained" if pretrained else "random init")}
    if weights is not None:
        from safetensors.torch import load_file
        state = load_file(weights)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"--weights {weights!r} does not fit {model} with {model_args or {}}: missing "
                             f"{sorted(missing)[:6]}, unexpected {sorted(unexpected)[:6]}")
    return net.eval(), source


def calibration_batches(spec: str, *, samples: int, batch_size: int, tokenizer_dir: str | None = None,
                        cache_dir: str | None = None, random_state: int = 0) -> list:
    """A list of batches from a registry dataset name or a safetensors file (module docstring)."""
    path = Path(spec)
    if spec.endswith(".safetensors"):
        if not path.is_file():
            raise ValueError(f"--calibration {spec!r}: no such file")
        from safetensors.torch import load_file
        tensors = load_file(str(path))
        if "input_ids" in tensors:
            keys = [k for k in _TOKEN_KEYS if k in tensors]
            n = min(samples, tensors["input_ids"].shape[0])
            return [{k: tensors[k][i:i + batch_size] for k in keys} for i in range(0, n, batch_size)]
        if "inputs" not in tensors:
            raise ValueError(f"--calibration {spec!r} holds {sorted(tensors)}; allowed: 'inputs' (+ 'labels') or "
                             f"'input_ids' (+ 'attention_mask', 'token_type_ids', 'labels')")
        x, y = tensors["inputs"], tensors.get("labels")
        n = min(samples, x.shape[0])
        return [(x[i:i + batch_size], y[i:i + batch_size]) if y is not None else (x[i:i + batch_size],)
                for i in range(0, n, batch_size)]
    from .data import calibration_subset, get_dataset, make_loader
    kwargs: dict[str, Any] = {}
    if spec == "text" or spec.startswith("glue:"):
        if tokenizer_dir is not None:
            from transformers import AutoTokenizer
            kwargs["tokenizer"] = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    ds = get_dataset(spec, "train", cache_dir=cache_dir, random_state=random_state, **kwargs)
    subset = calibration_subset(ds, min(samples, len(ds)), random_state=random_state)
    return list(make_loader(subset, batch_size))


def _forward_call(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, dict):
        return model(**{k: v for k, v in batch.items() if k != "labels"})
    if isinstance(batch, (tuple, list)):
        return model(batch[0])
    return model(batch)


def inference_speedup(dense: nn.Module, compressed: nn.Module, batch: Any, *, repeats: int = 20,
                      warmup: int = 3) -> dict[str, Any]:
    """Median wall time of one forward pass of each model on ``batch`` (alternating), and their ratio."""
    device = next(compressed.parameters()).device
    batch = _move(batch, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {"dense": [], "compressed": []}
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for key, net in (("dense", dense), ("compressed", compressed)):
                sync()
                t0 = time.perf_counter()
                _forward_call(net, batch)
                sync()
                if i >= warmup:
                    times[key].append(time.perf_counter() - t0)
    d, c = statistics.median(times["dense"]), statistics.median(times["compressed"])
    return {"dense_seconds": d, "compressed_seconds": c, "speedup": d / c, "repeats": repeats,
            "batch": _describe_batch(batch), "device": str(device), "threads": torch.get_num_threads()}


def compress_checkpoint(*, model: str, method: str, out: str, rank: int | None = None,
                        params_fraction: float | None = None, rank_rule: str = "uniform",
                        calibration: str | None = None, calibration_samples: int = 256, batch_size: int = 32,
                        targets: str = "auto", model_args: dict[str, Any] | None = None, weights: str | None = None,
                        pretrained: bool = False, tt_cores: int = 3, repeats: int = 20,
                        cache_dir: str | None = None, random_state: int = 0) -> dict[str, Any]:
    """Load, compress, save and time (module docstring); returns what ``report.json`` holds."""
    # the checks that need neither model nor data, before loading either
    uses_data = method in _CALIBRATED
    # a method without statistics still takes --calibration: its first batch times the two models
    validate_compress_arguments(method=method, rank=rank, params_fraction=params_fraction, rank_rule=rank_rule,
                                calibration_given=calibration is not None and uses_data, tt_cores=tt_cores,
                                random_state=random_state)
    for key, val in (("calibration_samples", calibration_samples), ("batch_size", batch_size), ("repeats", repeats)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"--{key.replace('_', '-')}={val!r} must be a positive int")
    net, source = load_model_from(model, model_args=model_args, weights=weights, pretrained=pretrained)
    batches = None
    if calibration is not None:
        batches = calibration_batches(calibration, samples=calibration_samples, batch_size=batch_size,
                                      tokenizer_dir=model if source["kind"] == "huggingface" else None,
                                      cache_dir=cache_dir, random_state=random_state)
    encoder = source["kind"] == "huggingface" and not source["class"].endswith(
        ("ForSequenceClassification", "ForCausalLM", "LMHeadModel"))
    dense = copy.deepcopy(net)
    _, rep = compress(net, method=method, rank=rank, params_fraction=params_fraction, rank_rule=rank_rule,
                      calibration=batches if uses_data else None, targets=targets, tt_cores=tt_cores,
                      likelihood="gaussian" if encoder else "categorical",
                      forward=encoder_forward if encoder else default_forward, random_state=random_state)
    speed = None
    if batches:
        speed = inference_speedup(dense.eval(), net.eval(), batches[0], repeats=repeats)
    report = {"source": source, "calibration": calibration, "compression": rep.as_dict(),
              "inference": speed if speed is not None else "not measured: no --calibration batch to time"}
    json.dumps(report)
    base = {"library": "timm", "name": source["name"], "args": source["model_args"]} \
        if source["kind"] == "timm" else None
    save_compressed(net, out, metadata={"source": source, "method": method}, base=base)
    atomic_write_json(Path(out) / "report.json", report)
    return report

