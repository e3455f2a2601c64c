"""Collect ``reports/bench/*.json`` into the Markdown table ``reports/bench/SUMMARY.md``.

    python -m bench.summary
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lowrank.utils import atomic_write_text

from .common import REPORT_DIR


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ok(flag: bool | None) -> str:
    return "—" if flag is None else ("met" if flag else "**missed**")


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _machine_line(rep: dict[str, Any]) -> str:
    m = rep["machine"]
    gpu = m["gpu"] if m.get("gpu_measured") else "not measured (no GPU on this machine)"
    load = m.get("load_average_1m")
    load_s = f", load average {load:.1f} at start" if load is not None else ""
    return (f"{m['cpu']}, {m['logical_cores']} logical cores ({m['cpu_capability']}), torch {m['torch']}, "
            f"{m['blas']}{load_s}; GPU: {gpu}")


def _machine_lines(parts: dict[str, dict[str, Any] | None]) -> tuple[bool, list[str]]:
    """Whether the reports come from different machines, and the summary's machine lines: one line when they
    agree, each file's machine when a script was re-run alone elsewhere (the load average is not the machine)."""
    keys = ("cpu", "logical_cores", "cpu_capability", "torch", "blas", "gpu")
    ident = {n: tuple(str(p["machine"].get(k)) for k in keys) for n, p in parts.items() if p}
    if not ident:
        return False, []
    if len(set(ident.values())) == 1:
        return False, [f"Machine: {_machine_line(next(p for p in parts.values() if p))}.", ""]
    return True, (["Machines (the files were measured on different machines: compare ratios within a file, not "
                   "across files):", ""] + [f"- `{n}.json`: {_machine_line(parts[n])}" for n in ident] + [""])


def layer_section(rep: dict[str, Any]) -> list[str]:
    c = rep["config"]
    lines = [f"### Target 1 — inference, one {c['in_features']}→{c['out_features']} layer, {c['rows']} rows",
             "",
             "Ratios to `nn.Linear` in the same process (medians of interleaved rounds). Limit = k(m+n)/(mn).",
             "",
             "| threads | allocator | params | rank | FLOP limit | rebuild W | factorized | × limit | "
             "oneDNN fact./oneDNN dense | goal (× limit) | status |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rep["inference"]:
        rv = r["ratio_vs_dense"]
        dnn = rv.get("factorized_onednn_vs_dense_onednn")
        lines.append(f"| {r['threads']} | {r['allocator']} | {_pct(r['fraction'])} | {r['rank']} | "
                     f"{r['flop_limit']:.3f} | "
                     f"{rv['rebuild']:.2f} | {rv['factorized']:.3f} | {r['factorized_over_limit']:.2f} | "
                     f"{'—' if dnn is None else f'{dnn:.3f}'} | {r['goal_over_limit']:.2f} | {_ok(r['met'])} |")
    return lines


def layer_training_section(rep: dict[str, Any]) -> list[str]:
    lines = ["### Target 2 — training step, one layer (forward, backward to the input, AdamW)", "",
              "| threads | params (incl. k² core) | rank | U·S·Vᵀ / dense | rebuild W / dense | goal | status |",
              "|---:|---:|---:|---:|---:|---:|---|"]
    for r in rep["training"]:
        rv = r["ratio_vs_dense"]
        lines.append(f"| {r['threads']} | {_pct(r['param_fraction'])} | {r['rank']} | {rv['low_rank']:.3f} | "
                     f"{rv['rebuild']:.3f} | ≤ {r['goal']} | {_ok(r['met'])} |")
    return lines


def models_section(rep: dict[str, Any]) -> list[str]:
    c = rep["config"]
    lines = ["### Target 1 — inference, whole models (compiled: every target Linear → `FactorizedLinear`)", "",
             f"ViT-B/16 at random init with {c['vit_b16_depth']} of its 12 blocks (identical blocks; patch "
             "embedding and head counted in the FLOP limit). Amdahl limit = 1 − s + s·r with s the measured "
             "share of time inside the target Linears (the rest — attention softmax, GELU, norms — does not shrink).",
             "", "| model | batch | allocator | params | FLOP limit | compiled / dense | × FLOP limit | "
             "Amdahl limit | × Amdahl | goal (× FLOP limit) | status |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, e in rep["models"].items():
        for key, alloc in (("inference", "default"), ("inference_retained", "retained")):
            for r in e.get(key, []):
                g = 1.5 if r["fraction"] >= 0.25 else 2.0
                lines.append(f"| {name} | {e['batch']} | {alloc} | {_pct(r['fraction'])} | {r['flop_limit']:.3f} | "
                             f"{r['ratio_vs_dense']:.3f} | {r['over_limit']:.2f} | {r['amdahl_limit']:.3f} | "
                             f"{r['over_amdahl_limit']:.2f} | {g} | {_ok(r['over_limit'] <= g)} |")
    return lines


def models_training_section(rep: dict[str, Any]) -> list[str]:
    lines = ["### Target 2 — training step, whole models (U·S·Vᵀ form at ≈10% of target parameters)", "",
              "| model | batch | target params | U·S·Vᵀ step / dense step | goal | status |",
              "|---|---:|---:|---:|---:|---|"]
    for name, e in rep["models"].items():
        t = e["training"]
        lines.append(f"| {name} | {t['batch']} | {_pct(t['target_param_ratio'])} | {t['ratio_vs_dense']:.3f} | "
                     f"≤ {t['goal']} | {_ok(t['met'])} |")
    return lines


def compression_section(rep: dict[str, Any]) -> list[str]:
    lines = ["### Target 3 — compression steps vs training wall time", "",
             "Share = cost / (cost + ν · step), step measured at the batch shown (the paper's batches are "
             "larger, so these are upper bounds). Steady cut = IEHT cut at 10% rank; first cut = at full rank "
             "right after conversion (once per run).", "",
             "| model | batch | step (10%) s | first cut s | steady cut s | "
             "IFHT Fisher s/cut (dense copy + full diagonal) | TRP s | batched SVD speed-up | "
             "max share at paper ν (cut, TRP) | goal | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, e in rep["models"].items():
        lines.append(f"| {name} | {e['batch']} | {e['step_s']['low_rank_10']:.2f} | "
                     f"{e['cut_full_rank']['median_s']:.3f} | "
                     f"{e['cut_10']['median_s']:.4f} | {e['ifht_fisher']['per_cut_s']:.1f} "
                     f"({e['ifht_fisher'].get('per_cut_s_before', float('nan')):.1f}) | {e['trp']['full_s']:.2f} | "
                     f"{e['batched_svd_full_rank']['speedup']:.2f} | {_pct(e['max_share_at_paper_frequencies'])} | "
                     f"≤ 5% | {_ok(e['met'])} |")
    lines += ["", "| model | cost | ν → share of training time |", "|---|---|---|"]
    for name, e in rep["models"].items():
        for k, d in e["share_of_training"].items():
            val = (", ".join(f"ν={nu}: {100 * v:.2f}%" for nu, v in d.items()) if isinstance(d, dict)
                   else f"{100 * d:.1f}%")
            lines.append(f"| {name} | {k} | {val} |")
    lines += ["", "TRP with `torch.svd_lowrank` at the rank the exact energy rule picks (+10 oversampling, 4 power "
              "iterations):", "", "| model | mean kept rank / min(m,n) | exact s | randomized s | speed-up | "
              "max excess Frobenius error |", "|---|---:|---:|---:|---:|---:|"]
    for name, e in rep["models"].items():
        t = e["trp"]
        lines.append(f"| {name} | {t['mean_rank_fraction']:.2f} | {t['full_s']:.2f} | {t['randomized_s']:.2f} | "
                     f"{t['speedup_randomized']:.2f} | {100 * t['max_excess_frobenius_error']:.2f}% |")
    return lines


def fisher_section(rep: dict[str, Any]) -> list[str]:
    lines = ["### Target 4 — per-sample diagonal Fisher (samples / s; true labels, float32)", "",
             "`hooks` is the default method with the fused check; `GEMM check` is the check before this work; "
             "`eager` runs the attention as matmul–softmax–matmul (vmap has no batching rule for "
             "`scaled_dot_product_attention`).", "",
             "| model | batch | layers | hooks | hooks (GEMM check) | hooks (no check) | func | loop | func / loop | "
             "func / loop, eager | check share GEMM → fused | max rel. diff vs loop | goal func/loop | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, e in rep["models"].items():
        s = e["samples_per_s"]
        lines.append(f"| {name} | {e['batch']} | {e['layers']} | {s['hooks']:.1f} | {s['hooks_gemm_check']:.1f} | "
                     f"{s['hooks_no_check']:.1f} | {s['func']:.1f} | {s['loop']:.1f} | "
                     f"{e['speedup_func_vs_loop']:.2f} | "
                     f"{e.get('speedup_func_vs_loop_eager', float('nan')):.2f} | "
                     f"{_pct(e['check_share_gemm'])} → {_pct(e['check_share_fused'])} | "
                     f"{max(e['rel_diff_vs_loop'].values()):.1e} | ≥ 3 | {_ok(e['met'])} |")
    return lines


def tt_section(rep: dict[str, Any]) -> list[str]:
    lines = ["### TTLinear — core-by-core contraction vs forming W (`bench/tt.py`)", "",
             "Which forward path of a tensor-train layer is faster, and which one `mode=\"auto\"` takes "
             f"(the core path only below 1/{rep['config']['cores_advantage']} of the dense path's "
             "multiply-adds).", "",
             "| case | cores s | dense s | cores / dense | MACs dense / cores | auto picks |",
             "|---|---:|---:|---:|---:|---|"]
    for c in rep["cases"]:
        m = c.get("macs") or c.get("first_layer_macs")
        lines.append(f"| {c['what']} | {c['cores_s']:.4f} | {c['dense_s']:.4f} | {c['cores_over_dense']:.2f} | "
                     f"{m['dense'] / m['cores']:.1f} | {c['auto_picks']} |")
    return lines


def memory_section(rep: dict[str, Any]) -> list[str]:
    gpu = rep["machine"].get("gpu_measured")
    key = "cuda_max_memory_allocated_mib" if gpu else "peak_rss_mib"
    what = "CUDA max allocated" if gpu else "resident set"
    lines = [f"### Target 6 — peak memory (each in a fresh process; {what})", "",
             "| run | peak MiB | increment over imports MiB | peak / dense | increment / dense | "
             "peak during the steps alone MiB | that / dense |", "|---|---:|---:|---:|---:|---:|---:|"]
    for group, label in (("runs", "digits ViT run: "), ("steps", "MiniLM, batch 8: ")):
        for name, e in rep[group].items():
            if "error" in e:
                lines.append(f"| {label}{name} | error: {e['error']} | | | | | |")
                continue
            phase = e.get("phase_peak_rss_mib")
            lines.append(f"| {label}{name} | {e[key]:.0f} | {e['increment_mib']:.0f} | "
                         f"{e.get('peak_vs_dense', float('nan')):.2f} | "
                         f"{e.get('increment_vs_dense', float('nan')):.2f} | "
                         f"{'—' if phase is None else f'{phase:.0f}'} | "
                         f"{'—' if 'phase_peak_vs_dense' not in e else format(e['phase_peak_vs_dense'], '.2f')} |")
    return lines


REASONS = {
    "layer_default": "glibc serves every block above 32 MiB by a fresh mmap, so each call page-faults and "
                     "zeroes its (rows × out) output; dense and factorised layers pay this alike, and at 10% it is "
                     "as long as the factorised GEMMs themselves (compare the `retained` rows).",
    "layer_threads": "two threads on two cores shared with other jobs: every GEMM waits at its barrier for the "
                     "descheduled thread, which hurts the short skinny GEMMs most (compare the one-thread rows).",
    "layer_skinny": "the second GEMM of a rank-61 factorisation has an inner dimension of 61: too short for the "
                    "BLAS micro-kernels to reach their peak, and its output write is as large as the dense layer's.",
    "models": "the attention softmax, GELU, layer norms and residual adds do not shrink with the rank (the "
              "FLOP counter does not count them); the Amdahl column is the honest bound, and the measured "
              "ratios sit within about 1.1–1.3× of it.",
    "vit_digits": "64-wide layers: each GEMM is a few microseconds, so a factorised layer's second kernel call "
                  "costs as much as the FLOPs it saves.",
    "compression": "the cut's float64 SVD and basis rotation cost O(k³ + (m+n)k²): large only at the first cut "
                   "(full rank, once per run) and for TRP, whose every truncation is a full SVD of each dense "
                   "weight (the TRP share falls with the batch: the paper's BERT batch is 32). The IFHT Fisher "
                   "(256 calibration samples, reported beside the target) is a forward, a backward and "
                   "per-sample products per sample, about 256/batch training steps, which no implementation "
                   "removes; only fewer calibration samples or a lower frequency do.",
    "fisher": "every method forms the same per-sample gradients (B·T·out·in numbers per layer and sample), "
              "which dominate once a sample has 100+ tokens: the loop's per-sample GEMMs already have 128–197 "
              "rows, so batching them (func) saves only the Python loop. On the 17-token digits ViT the loop "
              "overhead does matter, and there the gap is vmap's missing batching rule for "
              "scaled_dot_product_attention (see the eager column).",
}


def misses_section(parts: dict[str, Any]) -> list[str]:
    """One bullet per kind of miss: the missed rows, then the reason once."""
    groups: dict[str, list[str]] = {}

    def add(reason: str, row: str) -> None:
        groups.setdefault(reason, []).append(row)
    rep = parts.get("layer")
    if rep:
        for r in rep["inference"]:
            if not r["met"]:
                row = (f"{r['threads']} thread(s), {r['allocator']} allocator, {_pct(r['fraction'])}: "
                       f"{r['factorized_over_limit']:.2f}× (goal {r['goal_over_limit']})")
                add("layer_threads" if r["threads"] > 1 else
                    "layer_default" if r["allocator"] == "default" else "layer_skinny", row)
        for r in rep["training"]:
            if not r["met"]:
                add("layer_threads",
                    f"training step, {r['threads']} thread(s): {r['ratio_vs_dense']['low_rank']:.2f}× dense")
    rep = parts.get("models")
    if rep:
        for name, e in rep["models"].items():
            for key in ("inference", "inference_retained"):
                for r in e.get(key, []):
                    g = 1.5 if r["fraction"] >= 0.25 else 2.0
                    if r["over_limit"] > g:
                        add("vit_digits" if name == "vit_digits" else "models",
                            f"{name}, {'retained' if key.endswith('retained') else 'default'} allocator, "
                            f"{_pct(r['fraction'])}: {r['over_limit']:.2f}× the FLOP limit, "
                            f"{r['over_amdahl_limit']:.2f}× the Amdahl limit")
            if not e["training"]["met"]:
                add("vit_digits" if name == "vit_digits" else "models",
                    f"{name} training step: {e['training']['ratio_vs_dense']:.2f}× dense")
    rep = parts.get("compression")
    if rep:
        for name, e in rep["models"].items():
            if not e["met"]:
                add("compression", f"{name}: up to {_pct(e['max_share_at_paper_frequencies'])} of training time "
                                   f"at the paper's frequencies (batch {e['batch']})")
    rep = parts.get("fisher")
    if rep:
        for name, e in rep["models"].items():
            if not e["met"]:
                add("fisher", f"{name}: func is {e['speedup_func_vs_loop']:.2f}× the loop "
                              f"({e.get('speedup_func_vs_loop_eager', float('nan')):.2f}× with eager attention)")
    out = ["### Targets missed, and why", ""]
    if not groups:
        return out + ["None.", ""]
    titles = {"layer_default": "Layer, default allocator", "layer_threads": "Layer, two threads",
              "layer_skinny": "Layer, rank 61", "models": "Whole models", "vit_digits": "The 64-wide digits ViT",
              "compression": "Compression steps", "fisher": "Fisher, func vs loop"}
    for reason, rows in groups.items():
        out.append(f"- **{titles[reason]}** — " + "; ".join(rows) + f". *Why:* {REASONS[reason]}")
    return out + [""]


def write_summary(out: Path = REPORT_DIR, command: str = "python -m bench") -> Path:
    parts = {n: _load(out, n) for n in ("layer", "models", "compression", "fisher", "memory", "tt")}
    first = next((p for p in parts.values() if p), None)
    lines = ["# Benchmarks (issue #6: performance)", "",
             f"Reproduce: `{command}` (each script also runs alone: `python -m bench.layer`, …).", ""]
    lines += _machine_lines(parts)[1]
    if first:
        lines += ["All numbers are ratios measured inside one process (interleaved rounds, medians); absolute "
                  "times are in the JSON files. GPU numbers were not measured unless the machine line names a GPU.", ""]
    sections = [("layer", layer_section), ("models", models_section), ("layer", layer_training_section),
                ("models", models_training_section), ("compression", compression_section), ("fisher", fisher_section)]
    for key, fn in sections:
        if parts[key]:
            lines += fn(parts[key]) + [""]
    lines += ["### Target 5 — pipeline", "", "Measured by running it, not here: `make repro` on a fresh clone and the "
              "no-op `dvc repro` (README.md, the timing paragraph of the results).", ""]
    if parts["memory"]:
        lines += memory_section(parts["memory"]) + [""]
    if parts["tt"]:
        lines += tt_section(parts["tt"]) + [""]
    lines += misses_section(parts)
    path = out / "SUMMARY.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def main(argv=None) -> None:
    print(f"[summary] → {write_summary()}")


if __name__ == "__main__":
    main()
