"""Compress a model checkpoint on disk: ``python -m lowrank compress``.

    python -m lowrank compress --model vit_tiny_patch16_224 --weights vit.safetensors \\
        --model-args '{"num_classes": 10}' --method fwsvd --params-fraction 0.25 --calibration cifar10 --out DIR
    python -m lowrank compress --model path/to/hf_model_dir --method svd --params-fraction 0.5 --out DIR
    python -m lowrank compress --model path/to/gpt2_dir --method fwsvd --params-fraction 0.5 \\
        --calibration corpus.txt --out DIR            # + perplexity on held-out lines, before and after

``--model`` is a Hugging Face model folder (one with a ``config.json``, loaded offline with the ``Auto``
class its ``architectures`` name: a ``…ForSequenceClassification`` head, a causal LM head, else the bare
encoder) or a timm model name (built by ``timm.create_model`` with ``--model-args``; weights from
``--weights``, a safetensors state dict, or timm's own ``--pretrained`` download / cache; neither: random
weights, said so in the report). ``--calibration`` is one of

* a dataset of the library's registry (``digits``, ``mnist1d``, ``text``, ``cifar10``, ``glue:<task>``, …;
  text is tokenized with the HF folder's own tokenizer when it has one), built or downloaded into
  ``--cache-dir`` (default :data:`DEFAULT_CACHE_DIR`, relative to the working directory; the folder and the
  files written there are printed and listed in the report);
* a ``.safetensors`` file of named tensors: ``inputs`` (+ ``labels``) for tensor batches, or ``input_ids``
  (+ ``attention_mask``, ``token_type_ids``, ``labels``) for token batches (the first
  ``--calibration-samples`` rows);
* a UTF-8 text file (one sample per non-empty line) or a ``datasets`` ``save_to_disk`` folder (one sample
  per row of ``--calibration-column``), tokenized with the HF folder's tokenizer to at most
  :data:`MAX_LENGTH` tokens (:func:`lowrank.data.load_local_text`; its held-out samples are never
  calibrated on).

For a causal language model (``…ForCausalLM`` / ``…LMHeadModel``) the report adds its perplexity before
and after compression on held-out text (:func:`perplexity`): the first ``--perplexity-tokens`` tokens of
the held-out samples, each tokenized by the model's tokenizer and concatenated in order. Held out: the last
tenth of a text file or of a ``datasets`` folder (its ``validation`` / ``test`` split if it has one), a
registry text dataset's ``validation`` split (``text``, ``glue:<task>``; calibration reads ``train``), the
rows of a token file after the calibration rows. The Fisher of a causal LM is taken over its next-token
distributions at every non-padding position.

``DIR`` receives the compressed model (:func:`lowrank.save_compressed`: ``model.safetensors`` +
``structure.json``, with the base recorded so that ``lowrank.from_pretrained(DIR)`` loads it) and
``report.json``: the compression report (:class:`lowrank.api.CompressResult`), where the model and the
calibration came from, the cache, the perplexity (causal LMs), and the inference speed of the compressed
model against the dense one on this machine — the median of ``--repeats`` timed forward passes of one
calibration batch each, alternating the two models so that drift in the machine's speed affects both alike.
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from .api import _CALIBRATED, _describe_batch, _move, compress, validate_compress_arguments
from .fisher import FisherBatch, default_forward, encoder_forward
from .serialization import save_compressed
from .utils import atomic_write_json

__all__ = ["DEFAULT_CACHE_DIR", "MAX_LENGTH", "load_model_from", "calibration_batches", "perplexity",
           "inference_speedup", "compress_checkpoint"]

#: where registry calibration data is built / downloaded unless ``--cache-dir`` says otherwise (the other
#: commands' default too, so that ``python -m lowrank corpus`` and ``compress --calibration text`` share it)
DEFAULT_CACHE_DIR = "cache/text"
#: tokens per calibration sample from a text file / datasets folder (the registry's text datasets' length)
MAX_LENGTH = 128
#: the longest perplexity window: bounds the memory of one forward pass of a long-context model
MAX_WINDOW = 1024

_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels")
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


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
            else AutoModelForCausalLM if any(a.endswith(_CAUSAL_SUFFIXES) for a in archs) \
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


# ------------------------------------------------------------------------------------------ calibration
class _Calibration:
    """A ``--calibration`` value, checked (and local text read) before any model is loaded."""

    def __init__(self, spec: str, column: str | None = None):
        from .data import REGISTRY, load_local_text, num_classes

        self.spec, self.local = spec, None
        path = Path(spec)
        if spec.endswith(".safetensors"):
            if not path.is_file():
                raise ValueError(f"--calibration {spec!r}: no such file")
            self.kind = "tensor file"
        elif spec.partition(":")[0] in REGISTRY:   # a name wins over a same-named path (write ./text for that)
            num_classes(spec)   # a bad glue task: one line, naming the allowed ones
            self.kind = "registry"
        elif path.exists():
            self.local = load_local_text(path, column=column)
            self.kind = self.local.source["kind"]
        else:
            raise ValueError(f"--calibration {spec!r}: no such file or folder, and not a registry dataset; allowed: "
                             f"{sorted(REGISTRY)} (glue:<task>), a text file, a datasets folder or a .safetensors file")
        if column is not None and self.local is None:
            raise ValueError(f"--calibration-column {column!r} applies to a datasets folder, not to {spec!r}")

    @property
    def needs_tokenizer(self) -> bool:
        return self.local is not None or self.spec == "text" or self.spec.startswith("glue:")

    def describe(self) -> dict[str, Any]:
        return dict(self.local.source) if self.local is not None else {"kind": self.kind, "spec": self.spec}


def _pad_id(tokenizer: Any) -> int:
    # GPT-2-style tokenizers have no pad token; padded positions are masked, so any id does
    for tok_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tok_id is not None:
            return int(tok_id)
    return 0


def _tokenized_batches(texts: list[str], tokenizer: Any, *, batch_size: int, max_length: int) -> list:
    from .data import PadCollate

    enc = tokenizer(texts, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    items = [{k: torch.tensor(enc[k][i], dtype=torch.long) for k in keys} for i in range(len(texts))]
    collate = PadCollate(_pad_id(tokenizer))
    return [collate(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]


def _context_length(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 1:
            return value
    return None


def _batches(cal: _Calibration, *, samples: int, batch_size: int, tokenizer: Any = None,
             max_length: int = MAX_LENGTH, cache_dir: str | None = None, random_state: int = 0) -> list:
    from .data import calibration_subset, get_dataset, make_loader

    if cal.kind == "tensor file":
        from safetensors.torch import load_file
        tensors = load_file(cal.spec)
        if "input_ids" in tensors:
            keys = [k for k in _TOKEN_KEYS if k in tensors]
            n = min(samples, tensors["input_ids"].shape[0])
            return [{k: tensors[k][i:min(i + batch_size, n)] for k in keys} for i in range(0, n, batch_size)]
        if "inputs" not in tensors:
            raise ValueError(f"--calibration {cal.spec!r} holds {sorted(tensors)}; allowed: 'inputs' (+ 'labels') or "
                             f"'input_ids' (+ 'attention_mask', 'token_type_ids', 'labels')")
        x, y = tensors["inputs"], tensors.get("labels")
        n = min(samples, x.shape[0])
        return [(x[i:min(i + batch_size, n)], y[i:min(i + batch_size, n)]) if y is not None
                else (x[i:min(i + batch_size, n)],) for i in range(0, n, batch_size)]
    if cal.local is not None:
        texts = list(calibration_subset(cal.local.calibration, min(samples, len(cal.local.calibration)),
                                        random_state=random_state))
        return _tokenized_batches(texts, tokenizer, batch_size=batch_size, max_length=max_length)
    kwargs: dict[str, Any] = {"tokenizer": tokenizer, "max_length": max_length} \
        if tokenizer is not None and cal.needs_tokenizer else {}
    ds = get_dataset(cal.spec, "train", cache_dir=cache_dir, random_state=random_state, **kwargs)
    subset = calibration_subset(ds, min(samples, len(ds)), random_state=random_state)
    return list(make_loader(subset, batch_size))


def calibration_batches(spec: str, *, samples: int, batch_size: int, tokenizer_dir: str | None = None,
                        cache_dir: str | None = None, random_state: int = 0, column: str | None = None) -> list:
    """A list of batches from a registry dataset name, a safetensors file, a text file or a datasets folder
    (module docstring); text is tokenized with the tokenizer saved in ``tokenizer_dir``."""
    cal = _Calibration(spec, column)
    tokenizer = _load_tokenizer(tokenizer_dir, cal) if tokenizer_dir is not None and cal.needs_tokenizer else None
    if cal.local is not None and tokenizer is None:
        raise ValueError(f"--calibration {spec!r} is text: it needs a Hugging Face model folder with a tokenizer")
    return _batches(cal, samples=samples, batch_size=batch_size, tokenizer=tokenizer, cache_dir=cache_dir,
                    random_state=random_state)


def _load_tokenizer(folder: str, cal: _Calibration) -> Any:
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"--calibration {cal.spec!r} is text, but the model folder {folder!r} holds no tokenizer "
                         f"that loads offline ({type(err).__name__}); allowed: save the model's tokenizer into it "
                         f"(tokenizer.save_pretrained)") from None


def _causal_lm_forward(model: nn.Module, batch: Any) -> FisherBatch:
    """Next-token logits (B, T, V) of a causal LM, padding (``attention_mask`` 0) left out of the Fisher."""
    out = default_forward(model, batch)
    return FisherBatch(out.outputs, out.targets, batch.get("attention_mask") if isinstance(batch, Mapping) else None)


# ------------------------------------------------------------------------------------------ perplexity
def _held_out_ids(cal: _Calibration | None, *, tokenizer: Any, samples: int, n_tokens: int,
                  cache_dir: str | None, random_state: int) -> tuple[torch.Tensor | None, str]:
    """The first ``n_tokens`` held-out token ids (1-D) and where they came from; ``None`` and why not."""
    from .data import SPLITS, get_dataset

    if cal is None:
        return None, "not measured: no --calibration to hold text out of"
    if cal.kind == "tensor file":
        from safetensors.torch import load_file
        tensors = load_file(cal.spec)
        if "input_ids" not in tensors:
            return None, f"not measured: {cal.spec!r} holds no input_ids"
        ids, mask = tensors["input_ids"][samples:], tensors.get("attention_mask")
        if ids.shape[0] == 0:
            return None, f"not measured: {cal.spec!r} has no rows after the {samples} calibration rows"
        rows = [r[m.bool()] for r, m in zip(ids, mask[samples:])] if mask is not None else list(ids)
        return torch.cat(rows)[:n_tokens].long(), f"{cal.spec!r}: the rows after the first {samples} (calibration)"
    if cal.local is not None:
        texts, where = cal.local.held_out, f"{cal.spec!r}: {cal.local.source['held_out']}"
        if not texts:
            few = " (fewer than 10 samples leave no tenth)" if "tenth" in where else ""
            return None, f"not measured: {where} holds no sample{few}"
    elif cal.needs_tokenizer and "validation" in SPLITS[cal.spec.partition(":")[0]]:
        # the same loader as the calibration's train split: the same corpus, the same split rule
        ds = get_dataset(cal.spec, "validation", cache_dir=cache_dir, random_state=random_state,
                         tokenizer=tokenizer)
        pairs = getattr(ds, "text_pairs", None) or [""] * len(ds.texts)
        texts = [f"{a} {b}".strip() for a, b in zip(ds.texts, pairs)]
        where = f"the registry dataset {cal.spec!r}'s validation split (calibration reads train)"
    else:
        return None, (f"not measured: held-out text comes from a text file, a datasets folder, a registry text set "
                      f"(text, glue:<task>) or a token file, not {cal.spec!r}")
    where += "; each sample tokenized by the model folder's tokenizer, concatenated in order"
    ids: list[int] = []
    for text in texts:   # tokenize only as much as the budget needs
        ids += tokenizer(text)["input_ids"]
        if len(ids) >= n_tokens:
            break
    return torch.tensor(ids[:n_tokens], dtype=torch.long), where


def perplexity(model: nn.Module, ids: torch.Tensor, *, window: int) -> dict[str, Any]:
    """A causal LM's perplexity on the token stream ``ids`` (1-D): ``exp`` of the mean next-token negative
    log-likelihood, the stream cut into consecutive windows of ``window`` tokens, each scored on its own
    (token t of a window predicted from the tokens before it in that window; a last window of one token
    predicts nothing)."""
    if ids.dim() != 1 or window < 2:
        raise ValueError(f"perplexity needs a 1-D token stream and window >= 2, got {tuple(ids.shape)}, {window}")
    device = next(model.parameters()).device
    total, count = torch.zeros((), dtype=torch.float64), 0
    with torch.inference_mode():
        for start in range(0, ids.numel(), window):
            chunk = ids[start:start + window].to(device)
            if chunk.numel() < 2:
                continue
            logits = model(input_ids=chunk[None]).logits[0, :-1]
            # float64: a sum over thousands of tokens, compared across two models
            total += torch.nn.functional.cross_entropy(logits.double(), chunk[1:], reduction="sum").cpu()
            count += chunk.numel() - 1
    if count == 0:
        raise ValueError(f"perplexity: {ids.numel()} held-out token(s) predict nothing; need at least 2")
    return {"perplexity": float(torch.exp(total / count)), "mean_nll": float(total / count),
            "predicted_tokens": count}


# ------------------------------------------------------------------------------------------ timing
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


# ------------------------------------------------------------------------------------------ the command
def _cache_listing(root: Path) -> dict[str, tuple[int, int]]:
    """``relative path → (mtime, size)`` of the entries at most two levels down: enough to see what a
    dataset builder added (a file, or a folder of its own) without walking a large image tree."""
    found: dict[str, tuple[int, int]] = {}
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        for e in [entry, *(entry.iterdir() if entry.is_dir() else ())]:
            st = e.stat()
            found[e.relative_to(root).as_posix()] = (st.st_mtime_ns, st.st_size if e.is_file() else 0)
    return found


def compress_checkpoint(*, model: str, method: str, out: str, rank: int | None = None,
                        params_fraction: float | None = None, rank_rule: str = "uniform",
                        calibration: str | None = None, calibration_column: str | None = None,
                        calibration_samples: int = 256, batch_size: int = 32, targets: str = "auto",
                        model_args: dict[str, Any] | None = None, weights: str | None = None,
                        pretrained: bool = False, tt_cores: int = 3, repeats: int = 20,
                        perplexity_tokens: int = 4096, cache_dir: str = DEFAULT_CACHE_DIR, random_state: int = 0,
                        echo: Any = None) -> dict[str, Any]:
    """Load, compress, save, time and (causal LMs) score perplexity (module docstring); returns what
    ``report.json`` holds. ``echo(line)``, if given, is told where calibration data was cached."""
    # the checks that need neither model nor data, before loading either
    uses_data = method in _CALIBRATED
    # a method without statistics still takes --calibration: its first batch times the two models
    validate_compress_arguments(method=method, rank=rank, params_fraction=params_fraction, rank_rule=rank_rule,
                                calibration_given=calibration is not None and uses_data, tt_cores=tt_cores,
                                random_state=random_state)
    for key, val in (("calibration_samples", calibration_samples), ("batch_size", batch_size), ("repeats", repeats),
                     ("perplexity_tokens", perplexity_tokens)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"--{key.replace('_', '-')}={val!r} must be a positive int")
    if calibration is None and calibration_column is not None:
        raise ValueError(f"--calibration-column {calibration_column!r} needs --calibration (a datasets folder)")
    cal = _Calibration(calibration, calibration_column) if calibration is not None else None
    hf_folder = Path(model).is_dir()
    if cal is not None and cal.local is not None and not hf_folder:
        raise ValueError(f"--calibration {calibration!r} is text: it needs --model to be a Hugging Face folder with "
                         f"a tokenizer, not {model!r}")
    cache = Path(cache_dir).absolute()
    cached_before = _cache_listing(cache)

    net, source = load_model_from(model, model_args=model_args, weights=weights, pretrained=pretrained)
    causal = source["kind"] == "huggingface" and source["class"].endswith(_CAUSAL_SUFFIXES)
    tokenizer = _load_tokenizer(model, cal) if hf_folder and cal is not None and cal.needs_tokenizer else None
    context = _context_length(net)
    batches = None
    if cal is not None:
        batches = _batches(cal, samples=calibration_samples, batch_size=batch_size, tokenizer=tokenizer,
                           max_length=min(MAX_LENGTH, context or MAX_LENGTH), cache_dir=str(cache),
                           random_state=random_state)
    ids, ppl = None, None
    if causal:   # the held-out text, read (and cached) with the calibration data
        ids, where = _held_out_ids(cal, tokenizer=tokenizer, samples=calibration_samples,
                                   n_tokens=perplexity_tokens, cache_dir=str(cache), random_state=random_state)
        if ids is None or ids.numel() < 2:
            ppl, ids = where if ids is None else f"not measured: {where} gives {ids.numel()} token(s)", None
    cached_after = _cache_listing(cache)
    written = sorted(k for k, v in cached_after.items() if cached_before.get(k) != v)
    if written and echo is not None:
        echo(f"calibration data cached in {cache} (--cache-dir, default {DEFAULT_CACHE_DIR}): "
             + ", ".join(written[:4]) + (f" and {len(written) - 4} more" if len(written) > 4 else ""))
    if ids is not None:   # scored before compression changes the model
        window = min(context or MAX_WINDOW, MAX_WINDOW)
        dense_score = perplexity(net, ids, window=window)
        ppl = {"held_out": where, "requested_tokens": perplexity_tokens, "tokens": int(ids.numel()),
               "window": window, "predicted_tokens": dense_score["predicted_tokens"],
               "before": dense_score["perplexity"], "mean_nll_before": dense_score["mean_nll"]}

    encoder = source["kind"] == "huggingface" and not causal and not source["class"].endswith(
        "ForSequenceClassification")
    forward = encoder_forward if encoder else _causal_lm_forward if causal else default_forward
    dense = copy.deepcopy(net)
    _, rep = compress(net, method=method, rank=rank, params_fraction=params_fraction, rank_rule=rank_rule,
                      calibration=batches if uses_data else None, targets=targets, tt_cores=tt_cores,
                      likelihood="gaussian" if encoder else "categorical", forward=forward,
                      random_state=random_state)
    net.eval()
    if ids is not None:
        score = perplexity(net, ids, window=ppl["window"])
        ppl.update(after=score["perplexity"], mean_nll_after=score["mean_nll"])
    speed = None
    if batches:
        speed = inference_speedup(dense.eval(), net, batches[0], repeats=repeats)
    report = {"source": source, "calibration": calibration,
              "calibration_source": cal.describe() if cal is not None else None,
              "compression": rep.as_dict(),
              "inference": speed if speed is not None else "not measured: no --calibration batch to time",
              "cache": {"dir": str(cache), "default": DEFAULT_CACHE_DIR, "written": written}}
    if causal:
        report["perplexity"] = ppl
    json.dumps(report)
    base = {"library": "timm", "name": source["name"], "args": source["model_args"]} \
        if source["kind"] == "timm" else None
    save_compressed(net, out, metadata={"source": source, "method": method}, base=base)
    atomic_write_json(Path(out) / "report.json", report)
    return report
