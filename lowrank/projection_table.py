"""Projection table: Euclidean vs information projections of a pretrained encoder's MLP layers.

The zero-shot question of the paper's Section 3 (Eq. 4 vs Eq. 5 vs Eq. 7), measured on the real
pretrained MiniLM-L6 (the offline stand-in for a pretrained ViT-B/16 / BERT) and the offline text
corpus. For each rank and each projection (SVD, FWSVD, TFWSVD, activation-aware), every MLP layer
is projected on its own and then all are swapped in at once. Three scores:

(a) relative Frobenius error  √(Σ_l ‖W_l − Ŵ_l‖² / Σ_l ‖W_l‖²)  — what SVD minimises;
(b) relative Fisher-weighted error  Σ_l Σ_ij F_ij (W − Ŵ)_ij² / Σ_l Σ_ij F_ij W_ij²  — what TFWSVD
    minimises (FWSVD minimises its row-summed version);
(c) output divergence on held-out sentences: the mean over real (non-padding) tokens of
    ‖h(x) − ĥ(x)‖² for the final hidden states h; under the unit-variance Gaussian output model
    p(y|x) = N(h(x), I) this is twice the per-token KL(p_θ ‖ p_θ̂) — the information distance
    the paper argues a projection should minimise.

The Fisher is the *true* Fisher of that same Gaussian output model (y ~ N(h(x), I), per-sample
squared gradients), estimated on calibration sentences disjoint from the held-out ones, so no
labels are used anywhere.

Run: ``python -m lowrank projection-table --out reports`` (reads ``params.yaml: projection_table``).
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from tqdm.auto import tqdm

from .activations import input_second_moments
from .data import calibration_subset, make_loader, text_dataset
from .fisher import diagonal_fisher, encoder_forward
from .linalg import PROJECTIONS, validate_rank
from .surgery import compress_model, count_parameters, find_linear_layers
from .utils import atomic_write_json, atomic_write_text, make_generator, set_random_state

__all__ = ["run_projection_table", "validate_config", "DEFAULTS"]

DEFAULTS: dict[str, Any] = {
    "model": "minilm",
    "targets": "bert_mlp",
    "ranks": [32, 64, 128],
    "methods": ["svd", "fwsvd", "tfwsvd", "asvd"],
    "calibration_sentences": 512,
    "eval_sentences": 512,
    "max_length": 128,
    "batch_size": 32,
    "tfwsvd_tol": 1e-6,
    "tfwsvd_random_starts": 64,
    "tfwsvd_keep": 4,
    "asvd_ridge": 1e-4,
    "random_state": 0,
}


def validate_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and refuse bad values before any work (key, value, allowed range)."""
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"projection_table: unknown keys {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **cfg}
    if c["model"] != "minilm":
        raise ValueError(f"projection_table.model={c['model']!r}; allowed: 'minilm'")
    for m in c["methods"]:
        if m not in PROJECTIONS:
            raise ValueError(f"projection_table.methods contains {m!r}; allowed: {list(PROJECTIONS)}")
    if not c["ranks"] or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in c["ranks"]):
        raise ValueError(f"projection_table.ranks={c['ranks']!r}; must be a non-empty list of positive ints")
    for key in ("calibration_sentences", "eval_sentences", "batch_size", "tfwsvd_keep"):
        if isinstance(c[key], bool) or not isinstance(c[key], int) or c[key] < 1:
            raise ValueError(f"projection_table.{key}={c[key]!r}; must be a positive int")
    if isinstance(c["tfwsvd_random_starts"], bool) or not isinstance(c["tfwsvd_random_starts"], int) \
            or c["tfwsvd_random_starts"] < 0:
        raise ValueError(f"projection_table.tfwsvd_random_starts={c['tfwsvd_random_starts']!r}; must be an int ≥ 0")
    if not isinstance(c["max_length"], int) or c["max_length"] < 8:
        raise ValueError(f"projection_table.max_length={c['max_length']!r}; must be an int ≥ 8")
    for key in ("tfwsvd_tol", "asvd_ridge"):
        if not (isinstance(c[key], (int, float)) and c[key] >= 0):
            raise ValueError(f"projection_table.{key}={c[key]!r}; must be a number ≥ 0")
    return c


@torch.no_grad()
def _hidden_divergence(model, reference: list[torch.Tensor], loader) -> float:
    """Mean over real tokens of ‖h − ĥ‖², against cached reference hidden states."""
    total, tokens = 0.0, 0
    for ref, batch in zip(reference, loader):
        h = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].to(h.dtype)
        total += float((((h - ref) ** 2).sum(-1) * mask).sum())
        tokens += int(mask.sum())
    return total / tokens


def run_projection_table(cfg: Mapping[str, Any], out_dir: str | Path, *, cache_dir: str | Path | None = None,
                         progress: bool = True) -> dict[str, Any]:
    """Compute the table and write ``tables/projection_minilm.{csv,md}`` and ``metrics/projection_minilm.json``."""
    c = validate_config(cfg)
    from .models import build_tokenizer, minilm_encoder  # transformers is only needed here

    set_random_state(c["random_state"])
    t0 = time.perf_counter()
    tok = build_tokenizer("minilm")
    encoder = minilm_encoder().eval()
    layers = find_linear_layers(encoder, c["targets"])
    for r in c["ranks"]:
        for name, layer in layers.items():
            validate_rank(r, tuple(layer.weight.shape), name, "projection_table.ranks")

    calib_pool = text_dataset("train", cache_dir=cache_dir, random_state=c["random_state"], tokenizer=tok,
                              max_length=c["max_length"])
    held_pool = text_dataset("validation", cache_dir=cache_dir, random_state=c["random_state"], tokenizer=tok,
                             max_length=c["max_length"])
    calib = calibration_subset(calib_pool, min(c["calibration_sentences"], len(calib_pool)), c["random_state"])
    held = calibration_subset(held_pool, min(c["eval_sentences"], len(held_pool)), c["random_state"])
    calib_loader = make_loader(calib, c["batch_size"])
    held_loader = make_loader(held, c["batch_size"])

    fisher = diagonal_fisher(encoder, calib_loader, list(layers), encoder_forward, likelihood="gaussian",
                             labels="true", generator=make_generator(c["random_state"]), dtype=torch.float64,
                             progress=progress)
    moments = input_second_moments(encoder, calib_loader, layers, lambda m, b: m(
        input_ids=b["input_ids"], attention_mask=b["attention_mask"]), mask=lambda b: b["attention_mask"],
        progress=progress)
    t_stats = time.perf_counter() - t0

    with torch.no_grad():
        reference = [encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
                     for b in held_loader]

    weights = {n: l.weight.detach() for n, l in layers.items()}
    w_norm2 = sum(float((W.double() ** 2).sum()) for W in weights.values())
    wf_norm2 = sum(float((fisher[n] * W.double() ** 2).sum()) for n, W in weights.items())
    base = count_parameters(encoder, list(layers))

    rows = []
    jobs = [(r, m) for r in c["ranks"] for m in c["methods"]]
    for rank, method in tqdm(jobs, desc="projections", disable=not progress):
        t1 = time.perf_counter()
        model = copy.deepcopy(encoder)
        kwargs = {}
        if method == "tfwsvd":
            # multi-start ALS to its stopping rule (lowrank.linalg.element_weighted_projection); no cap
            kwargs = {"tol": c["tfwsvd_tol"], "random_starts": c["tfwsvd_random_starts"], "keep": c["tfwsvd_keep"]}
        elif method == "asvd":
            kwargs = {"ridge": c["asvd_ridge"]}
        rep = compress_model(model, c["targets"], method=method, rank=rank,
                             fisher={n: f.float() for n, f in fisher.items()},
                             second_moments=moments, force=True, projection_kwargs=kwargs)
        fro, fw = 0.0, 0.0
        for name, W in weights.items():
            W_hat = model.get_submodule(name).weight.detach().double()
            d2 = (W.double() - W_hat) ** 2
            fro += float(d2.sum())
            fw += float((fisher[name] * d2).sum())
        div = _hidden_divergence(model, reference, held_loader)
        rows.append({
            "rank": rank,
            "method": method,
            "target_param_fraction": rep.after.target / base.target,
            "rel_frobenius_error": math.sqrt(fro / w_norm2),
            "rel_fisher_error": fw / wf_norm2,
            "hidden_mse": div,
            "kl_per_token": 0.5 * div,
            "seconds": time.perf_counter() - t1,
        })

    meta = {
        "model": "MiniLM-L6 (all-MiniLM-L6-v2, pretrained, offline package)",
        "targets": c["targets"],
        "layers": list(layers),
        "calibration_sentences": len(calib),
        "eval_sentences": len(held),
        "fisher": "true Fisher of N(h(x), I) on final hidden states, per-sample, summed over sentences",
        "stats_seconds": t_stats,
        "total_seconds": time.perf_counter() - t0,
        "config": c,
    }
    out = Path(out_dir)
    _write_outputs(rows, meta, out)
    return {"rows": rows, "meta": meta}


def _write_outputs(rows: list[dict], meta: dict, out: Path) -> None:
    cols = ["rank", "method", "target_param_fraction", "rel_frobenius_error", "rel_fisher_error", "hidden_mse",
            "kl_per_token", "seconds"]
    csv = ",".join(cols) + "\n" + "".join(",".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c])
                                                   for c in cols) + "\n" for r in rows)
    atomic_write_text(out / "tables" / "projection_minilm.csv", csv)
    best = {}
    for r in rows:
        for key in ("rel_frobenius_error", "rel_fisher_error", "hidden_mse"):
            cur = best.get((r["rank"], key))
            if cur is None or r[key] < cur:
                best[(r["rank"], key)] = r[key]

    def cell(r, key, fmt):
        s = format(r[key], fmt)
        return f"**{s}**" if r[key] == best[(r["rank"], key)] else s

    lines = [
        "# Projection table — MiniLM-L6 MLP layers, zero-shot (the paper's Eq. 4 / 5 / 7)",
        "",
        f"Model: {meta['model']}; targets: `{meta['targets']}` ({len(meta['layers'])} layers); "
        f"Fisher and input moments from {meta['calibration_sentences']} calibration sentences; "
        f"divergence on {meta['eval_sentences']} held-out sentences. Bold: best per rank and column.",
        "",
        "| rank | % MLP params | method | rel. Frobenius error | rel. Fisher-weighted error | "
        "hidden-state MSE (= 2·KL/token) |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['rank']} | {100 * r['target_param_fraction']:.1f} | {r['method']} | "
                     f"{cell(r, 'rel_frobenius_error', '.4f')} | {cell(r, 'rel_fisher_error', '.4f')} | "
                     f"{cell(r, 'hidden_mse', '.4g')} |")
    lines += ["", f"Fisher: {meta['fisher']}. Wall time {meta['total_seconds']:.0f} s "
                  f"(statistics {meta['stats_seconds']:.0f} s).", ""]
    atomic_write_text(out / "tables" / "projection_minilm.md", "\n".join(lines))
    metrics = {f"{r['method']}_r{r['rank']}": {"rel_frobenius_error": r["rel_frobenius_error"],
                                              "rel_fisher_error": r["rel_fisher_error"],
                                              "hidden_mse": r["hidden_mse"]} for r in rows}
    atomic_write_json(out / "metrics" / "projection_minilm.json", metrics)
