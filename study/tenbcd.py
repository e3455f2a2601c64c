"""The tenBCD study of the companion paper: tables, figures and verdicts of ``runs/tenbcd/<dataset>/``
(notebook ``notebooks/07_tenbcd.py``), the claims (g1)–(g3) of REPORT.md.

The companion paper ("On Model Compression for Neural Networks: Framework, Algorithm, and
Convergence Guarantee", arXiv 2303.06815) claims, for tenBCD on TT-compressed MLPs:

* (g1) sufficient decrease: Φ(P_k) + λ‖P_k − P_{k−1}‖² ≤ Φ(P_{k−1}) at every iteration;
* (g2) the O(1/k) rate: min_{j≤k} ‖P_j − P_{j−1}‖² ≤ (Φ(P_0) − Φ(P_k)) / (λ k);
* (g3) a better accuracy / compression trade-off than SGD-type training at compression ratios
  down to 0.02.

Here the guaranteed decrease is D_k = Σ_B (α_B/2)‖ΔB‖² (:func:`tenbcd.proximal_term`: α for W and the cores,
α_uv/n for U and V), so λ = min(α, α_uv)/2 in the norm of :func:`tenbcd.proximal_distance`. (g3) is decided
against each gradient baseline of :mod:`tenbcd.baselines` on the same TT-parameterised MLP, every method
tuned alike on a validation split (:mod:`tenbcd.experiment`): per seed, the mean over the compressed CRs of
tenBCD's test accuracy minus the baseline's, both at their validation-chosen configuration and checkpoint;
the verdict is the 95 % t interval of that mean over seeds (:func:`study.intervals.decide_interval`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .intervals import t_interval, decide_interval
from .registry import Artifact, Inputs, register
from .runs import RunsDirs, run_roots
from .verdicts import Verdict
from .writers import include_figure, include_table, new_figure

__all__ = ["NOTEBOOK", "SWEEP", "CR_ACCURACY", "CONVERGENCE", "SLACK_TOLERANCE", "LABELS", "load_tenbcd",
           "tenbcd_table", "tenbcd_accuracy_figure", "tenbcd_convergence_figure", "rate_check", "g3_effects",
           "verdict_tenbcd", "ARTIFACT"]

NOTEBOOK = "07_tenbcd"
#: the study's folder of runs/: one `python -m tenbcd` run per dataset (not compression runs)
SWEEP = "tenbcd"
CR_ACCURACY = "tenbcd_cr_accuracy"    # a figure and a table
CONVERGENCE = "tenbcd_convergence"    # figure

#: rounding allowance of the float64 sufficient-decrease check, relative to |Φ|
SLACK_TOLERANCE = 1e-9

#: how each method is named in tables and figures (order: tenBCD first, then the baselines)
LABELS = {"tenbcd": "tenBCD", "adamw_ce": "AdamW, cross-entropy", "adamw_sq": "AdamW, squared loss",
          "sgd_ce": "SGD, cross-entropy"}
_STYLE = {"tenbcd": ("o-", "tab:blue"), "adamw_ce": ("s-", "tab:orange"), "adamw_sq": ("^--", "tab:green"),
          "sgd_ce": ("v-", "tab:red")}
_COLUMNS = ["dataset", "method", "target_cr", "cr", "tt_rank", "config", "checkpoint", "unit", "budget", "seed",
            "train_acc",
            "val_acc", "test_acc", "test_acc_w", "seconds", "macs", "tuning_seconds", "tuning_macs", "n_train",
            "n_val", "n_test", "machine"]


def _config_text(config: dict[str, Any], keys) -> str:
    """The searched settings of a configuration (``keys``: its method's grid), ``lr=0.01, …``."""
    return ", ".join(f"{k}={config[k]:g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                     for k in keys if k in config) or "–"


def _grid_keys(config: dict[str, Any], method: str) -> list[str]:
    block = config["tenbcd"] if method == "tenbcd" else config["baselines"][method]
    return list(block["grid"])


def load_tenbcd(runs_dir: RunsDirs) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    """One row per (dataset, method, target CR, seed) of ``<root>/tenbcd/*/metrics.json`` at the chosen
    configuration and checkpoint (``runs_dir``: one folder, or several searched in order — this checkout's
    runs, then the committed evidence of the extended set; a dataset is read from the first that has it), and
    per dataset the tenBCD runs' histories (grid and seeds), each
    ``{"target_cr", "config", "seed", "role", "history", "alpha", "alpha_uv", "config_text"}`` with the proximal
    weights that run used (``config`` in the rows and ``config_text`` name the searched settings only)."""
    found: dict[str, Path] = {}
    for root in run_roots(runs_dir):
        for mpath in sorted((root / SWEEP).glob("*/metrics.json")) if (root / SWEEP).is_dir() else []:
            found.setdefault(mpath.parent.name, mpath)
    rows, histories = [], {}
    for mpath in (found[k] for k in sorted(found)):
        metrics = json.loads(mpath.read_text())
        if "selected" not in metrics:
            raise ValueError(f"{mpath}: not a metrics file of the tuned study (no 'selected'); re-run "
                             f"`python -m tenbcd` for it")
        name = str(metrics.get("dataset", mpath.parent.name))
        sizes = {k: metrics.get(k) for k in ("n_train", "n_val", "n_test", "machine")}
        for sel in metrics["selected"]:
            for rec in sel["per_seed"]:
                rows.append({"dataset": name, "method": sel["method"], "target_cr": sel["target_cr"],
                             "cr": sel["cr"], "tt_rank": sel["tt_rank"],
                             "config": _config_text(sel["config"], _grid_keys(metrics["config"], sel["method"])),
                             "checkpoint": sel["checkpoint"], "unit": sel["unit"],
                             "budget": sel["config"]["iterations" if sel["method"] == "tenbcd" else "epochs"],
                             "tuning_seconds": sel["tuning_seconds"], "tuning_macs": sel["tuning_macs"],
                             "test_acc_w": rec.get("test_acc_w"), **sizes,
                             **{k: rec[k] for k in ("seed", "train_acc", "val_acc", "test_acc", "seconds", "macs")}})
        fixed = metrics["config"]["tenbcd"]["fixed"]
        hpath = mpath.parent / "history.json"
        hist = json.loads(hpath.read_text()) if hpath.is_file() else []
        runs = []
        for h in hist:
            if h["method"] != "tenbcd":
                continue
            cfg = {**fixed, **h["config"]}
            alpha = float(cfg.get("alpha", 0.003))
            alpha_uv = cfg.get("alpha_uv")
            runs.append({**h, "alpha": alpha, "alpha_uv": alpha if alpha_uv is None else float(alpha_uv),
                         "config_text": _config_text(h["config"], _grid_keys(metrics["config"], "tenbcd"))})
        histories[name] = runs
    if not rows:
        return pd.DataFrame(columns=_COLUMNS), histories
    df = pd.DataFrame(rows)
    df["method"] = pd.Categorical(df["method"], categories=[m for m in LABELS if m in set(df["method"])] +
                                  sorted(set(df["method"]) - set(LABELS)), ordered=True)
    return df[_COLUMNS].sort_values(["dataset", "cr", "method", "seed"], ascending=[True, False, True, True]) \
        .reset_index(drop=True), histories


def _interval_text(values: np.ndarray) -> str:
    iv = t_interval(values)
    if iv.n < 2:
        return f"{iv.mean:.3f}"
    return f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]"


def tenbcd_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, CR and method: the configuration and checkpoint chosen on validation, the test accuracy
    over seeds (mean and 95 % t interval), the training accuracy beside it (a fit that does not generalise
    shows as a gap between the two), the validation accuracy of the choice, and the cost of training to the
    checkpoint (wall seconds on the machine that ran it, multiply-adds) and of the whole search."""
    if df.empty:
        return pd.DataFrame({"status": [f"no runs in runs/{SWEEP}"]})
    out = []
    for (ds, cr, method), g in df.groupby(["dataset", "cr", "method"], observed=True, sort=False):
        r = g.iloc[0]
        rank = r["tt_rank"]
        out.append({
            "dataset": ds, "CR": f"{cr:.3f}",
            "bond rank": "dense" if rank is None or (isinstance(rank, float) and math.isnan(rank)) else str(int(rank)),
            "method": LABELS.get(method, method),
            "chosen on validation": f"{r['config']}; {r['unit']} {r['checkpoint']}",
            "test accuracy [95 % t]": _interval_text(g["test_acc"].to_numpy(float)),
            "train accuracy": f"{g['train_acc'].mean():.3f}",
            "validation (seed 0)": f"{r['val_acc']:.3f}",
            "seconds": f"{g['seconds'].mean():.1f}",
            "multiply-adds": f"{g['macs'].mean():.3g}",
            "search: seconds / multiply-adds": f"{r['tuning_seconds']:.0f} / {r['tuning_macs']:.3g}",
            "seeds": int(g["seed"].nunique()),
        })
    return pd.DataFrame(out)


def tenbcd_accuracy_figure(df: pd.DataFrame, title: str) -> Figure:
    """Per dataset (columns): test accuracy (mean over seeds, bars: 95 % t interval), training accuracy, and
    the multiply-adds of training to the chosen checkpoint, against the compression ratio (log scale)."""
    dsets = sorted(df["dataset"].unique()) if not df.empty else ["no runs"]
    fig, axes = new_figure(3, len(dsets), width=5.0, height=3.2)
    for col, ds in enumerate(dsets):
        ax_te, ax_tr, ax_c = axes[0, col], axes[1, col], axes[2, col]
        d = df[df["dataset"] == ds]
        if d.empty:
            ax_te.text(0.5, 0.5, "no runs in runs/tenbcd", ha="center", va="center", transform=ax_te.transAxes)
        for method, g in d.groupby("method", observed=True, sort=False):
            fmt, color = _STYLE.get(method, ("x-", "0.4"))
            per_cr = g.groupby("cr")
            crs = np.array(sorted(per_cr.groups))
            ivs = [t_interval(per_cr.get_group(c)["test_acc"].to_numpy(float)) for c in crs]
            mean = np.array([iv.mean for iv in ivs])
            # an accuracy lies in [0, 1]: the bars are drawn clipped to it (a diverged seed widens a t interval
            # far beyond; the table gives it whole)
            err = np.array([[iv.mean - max(iv.lo, 0.0), min(iv.hi, 1.0) - iv.mean] if iv.n > 1 else [0.0, 0.0]
                            for iv in ivs]).T
            ax_te.errorbar(crs, mean, yerr=err, fmt=fmt, color=color, capsize=3, label=LABELS.get(method, method))
            ax_tr.plot(crs, per_cr["train_acc"].mean().loc[crs], fmt, color=color, label=LABELS.get(method, method))
            ax_c.plot(crs, per_cr["macs"].mean().loc[crs], fmt, color=color, label=LABELS.get(method, method))
        for ax, ylabel in ((ax_te, "test accuracy"), (ax_tr, "training accuracy"),
                           (ax_c, "multiply-adds of training")):
            ax.set_xscale("log")
            ax.set_xlabel("compression ratio (TT parameters / dense parameters)")
            ax.set_ylabel(ylabel)
            if not d.empty:
                ax.legend(fontsize=7)
        ax_c.set_yscale("log")
        ax_te.set_title(f"{ds}: test accuracy (95 % t interval over seeds, clipped to [0, 1])", fontsize=10)
        ax_tr.set_title(f"{ds}: training accuracy (generalisation gap)", fontsize=10)
        ax_c.set_title(f"{ds}: cost to the chosen checkpoint", fontsize=10)
    fig.suptitle(title)
    return fig


def rate_check(hist: dict[str, Any], alpha: float, alpha_uv: float | None = None) -> pd.DataFrame:
    """Per iteration k of one tenBCD history: Φ_k, ‖ΔP_k‖², the running minimum min_{j≤k}‖ΔP_j‖², the O(1/k)
    bound (Φ_0 − Φ_k)/(λ k) with λ = min(α, α_uv)/2, the sufficient-decrease slack, and its margin: the
    decrease Φ_{k−1} − Φ_k over the decrease D_k the lemma guarantees (≥ 1 when (g1) holds; how far above 1
    says how little an inexact block update would have to give up before (g1) noticed)."""
    obj = np.asarray(hist["objective"], dtype=float)
    dp = np.asarray([np.nan if v is None else v for v in hist["dP2"]], dtype=float)
    slack = np.asarray([np.nan if v is None else v for v in hist["slack"]], dtype=float)
    lam = min(alpha, alpha if alpha_uv is None else alpha_uv) / 2.0
    if "prox" in hist:
        guaranteed = np.asarray([np.nan if v is None else v for v in hist["prox"]], dtype=float)[1:]
    else:   # one α for every block: D_k = (α/2)‖ΔP_k‖²
        guaranteed = (alpha / 2.0) * dp[1:]
    k = np.asarray(hist["iteration"], dtype=float)[1:]
    running = np.minimum.accumulate(dp[1:])
    bound = (obj[0] - obj[1:]) / (lam * k)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = np.where(guaranteed > 0, (slack[1:] + guaranteed) / guaranteed, np.nan)
    return pd.DataFrame({"k": k, "objective": obj[1:], "dP2": dp[1:], "min_dP2": running, "bound": bound,
                         "slack": slack[1:], "margin": margin})


def _selected_runs(df: pd.DataFrame, histories: dict[str, list[dict]], ds: str, seed: int = 0) -> list[dict]:
    """The tenBCD histories of the chosen configuration per CR (grid run of the selecting seed)."""
    chosen = df[(df["dataset"] == ds) & (df["method"] == "tenbcd")].drop_duplicates("target_cr")
    out = []
    for _, r in chosen.iterrows():
        for h in histories.get(ds, []):
            if h["target_cr"] == r["target_cr"] and h["role"] == "grid" and h["config_text"] == r["config"]:
                out.append(h)
                break
    return out


def tenbcd_convergence_figure(df: pd.DataFrame, histories: dict[str, list[dict]], title: str) -> Figure:
    """Per dataset (rows), for tenBCD's chosen configuration at each CR: left, Φ(P_k); right,
    min_{j≤k}‖ΔP_j‖² with the O(1/k) bound of (g2) (dashed), log-log."""
    dsets = sorted(histories) or ["no runs"]
    fig, axes = new_figure(len(dsets), 2, width=5.2, height=3.6)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
    for row, ds in enumerate(dsets):
        axo, axr = axes[row, 0], axes[row, 1]
        runs = sorted(_selected_runs(df, histories, ds), key=lambda h: -h["target_cr"]) if not df.empty else []
        for c, h in zip(colors * 3, runs):
            r = rate_check(h["history"], h["alpha"], h["alpha_uv"])
            label = f"CR target {h['target_cr']:g}"
            axo.plot(np.r_[0, r["k"]], np.r_[h["history"]["objective"][0], r["objective"]], color=c, label=label)
            axr.plot(r["k"], r["min_dP2"], color=c, label=label)
            axr.plot(r["k"], r["bound"], "--", color=c, lw=0.9)
        axo.set_yscale("log")
        axo.set_xlabel("iteration k")
        axo.set_ylabel("objective Φ(P_k)")
        axo.set_title(f"{ds}: objective (chosen configuration per CR)", fontsize=10)
        axr.set_xscale("log")
        axr.set_yscale("log")
        axr.set_xlabel("iteration k")
        axr.set_ylabel("min_{j≤k} ‖P_j − P_{j−1}‖²")
        axr.set_title(f"{ds}: O(1/k) check (dashed: (Φ₀ − Φ_k)/(λk))", fontsize=10)
        if runs:
            axo.legend(fontsize=7)
            axr.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def g3_effects(df: pd.DataFrame, ds: str, baseline: str) -> pd.DataFrame:
    """Per seed: the mean over the compressed CRs (CR < 1) of tenBCD's test accuracy minus ``baseline``'s,
    paired by seed (the same initial weights and cores), and the same for training accuracy; only seeds that
    both methods ran at every compressed CR count."""
    d = df[(df["dataset"] == ds) & (df["cr"] < 1)]
    a = d[d["method"] == "tenbcd"].set_index(["seed", "target_cr"])
    b = d[d["method"] == baseline].set_index(["seed", "target_cr"])
    both = a.index.intersection(b.index)
    if both.empty:
        return pd.DataFrame(columns=["seed", "test_gap", "train_gap", "crs"])
    diff = pd.DataFrame({"test": a.loc[both, "test_acc"] - b.loc[both, "test_acc"],
                         "train": a.loc[both, "train_acc"] - b.loc[both, "train_acc"]})
    n_crs = d["target_cr"].nunique()
    per = diff.groupby(level="seed").agg(test_gap=("test", "mean"), train_gap=("train", "mean"),
                                         crs=("test", "size")).reset_index()
    return per[per["crs"] == n_crs].reset_index(drop=True)


def verdict_tenbcd(df: pd.DataFrame, histories: dict[str, list[dict]]) -> list[Verdict]:
    """(g1) sufficient decrease, (g2) the O(1/k) rate (over every tenBCD run: the grid and the seeds), and
    (g3) per dataset against each baseline, decided by the t interval over seeds."""
    src = "the companion paper (arXiv 2303.06815)"
    statements = {"(g1)": "(g1) tenBCD decreases Φ sufficiently at every iteration: Φ(P_k) + D_k ≤ Φ(P_{k−1})",
                  "(g2)": "(g2) tenBCD converges at rate O(1/k): min_{j≤k}‖ΔP_j‖² ≤ (Φ₀ − Φ_k)/(λ k)",
                  "(g3)": "(g3) tenBCD trades accuracy for compression better than SGD-type training"}
    if df.empty:
        return [Verdict(c, s, src, "no runs", "no runs in runs/tenbcd") for c, s in statements.items()]
    out = []
    worst, iters, runs, margins = math.inf, 0, 0, []
    bound_ok, bound_n = 0, 0
    for ds in sorted(histories):
        for h in histories[ds]:
            r = rate_check(h["history"], h["alpha"], h["alpha_uv"])
            scale = np.maximum(np.abs(r["objective"].to_numpy()), 1.0)
            rel = (r["slack"] / scale).to_numpy()
            if np.isfinite(rel).any():
                worst = min(worst, float(np.nanmin(rel)))
            margins.append(r["margin"].to_numpy(dtype=float))
            iters += int(np.isfinite(rel).sum())
            runs += 1
            # the bound's own rounding: Φ₀ − Φ_k carries ~SLACK_TOLERANCE·max(|Φ|, 1) per iteration
            allowance = r["k"] * SLACK_TOLERANCE * max(abs(h["history"]["objective"][0]), 1.0) / (
                min(h["alpha"], h["alpha_uv"]) / 2)
            ok = r["min_dP2"] <= r["bound"] + allowance
            bound_ok += int(ok.sum())
            bound_n += len(r)
    m = np.concatenate(margins) if margins else np.array([])
    m = m[np.isfinite(m)]
    power = (f". Its power is small: the decrease exceeds the guaranteed D_k by a factor of "
             f"{np.min(m):.1f} at least (median {np.median(m):.1f}, max {np.max(m):.3g} over {m.size} iterations), "
             f"so an update far from a block's exact minimiser would still pass; what verifies the algorithm is "
             f"the per-block exactness tests (tests/test_tenbcd.py: every block update against an independent "
             f"minimiser — scipy, brute-force least squares, zero gradients of the closed forms)") if m.size else ""
    g1 = "reproduced" if worst >= -SLACK_TOLERANCE else ("not reproduced" if np.isfinite(worst) else "no runs")
    out.append(Verdict("(g1)", statements["(g1)"], f"{src}, its sufficient-decrease lemma", g1,
                       f"{iters} iterations over {runs} tenBCD runs (every configuration of the grids and every "
                       f"seed); smallest slack relative to max(|Φ|, 1): {worst:.3g} (rounding allowance "
                       f"{SLACK_TOLERANCE:g}){power}", datasets=", ".join(sorted(histories))))
    out.append(Verdict("(g2)", statements["(g2)"], f"{src}, its Theorem (O(1/k) rate under the KŁ property)",
                       "reproduced" if bound_n and bound_ok == bound_n else ("no runs" if not bound_n
                                                                              else "not reproduced"),
                       f"bound met at {bound_ok}/{bound_n} iterations (a consequence of (g1) summed over "
                       f"iterations, so it restates (g1) and adds no evidence of its own; it says nothing about "
                       f"the KŁ exponent)", datasets=", ".join(sorted(histories))))
    for ds in sorted(df["dataset"].unique()):
        d = df[df["dataset"] == ds]
        crs = sorted(d.loc[d["cr"] < 1, "cr"].unique(), reverse=True)
        cr_text = f"CR {', '.join(f'{c:.3g}' for c in crs)}"
        bcd = d[d["method"] == "tenbcd"]
        for baseline in [m for m in LABELS if m != "tenbcd" and (d["method"] == m).any()]:
            per = g3_effects(df, ds, baseline)
            iv = t_interval(per["test_gap"].to_numpy(float))
            tr = t_interval(per["train_gap"].to_numpy(float))
            base = d[d["method"] == baseline]
            per_cr = "; ".join(
                f"CR {c:.3g}: {bcd.loc[bcd['cr'] == c, 'test_acc'].mean():.3f} vs "
                f"{base.loc[base['cr'] == c, 'test_acc'].mean():.3f} "
                f"(train {bcd.loc[bcd['cr'] == c, 'train_acc'].mean():.3f} "
                f"vs {base.loc[base['cr'] == c, 'train_acc'].mean():.3f})" for c in crs)
            if tr.n >= 2 and tr.hi < 0:
                fit = (f"tenBCD fits the training data worse too (training-accuracy gap {tr.text()}): an "
                       f"optimisation gap within its budget, not only a generalisation gap")
            else:
                fit = f"training-accuracy gap {tr.text()}: no sign that tenBCD fits the training data worse"
            capped = sorted(bcd.loc[(bcd["cr"] < 1) & (bcd["checkpoint"] == bcd["budget"]), "cr"].unique(),
                            reverse=True)
            if capped:
                fit += (f"; tenBCD's choice is its last checkpoint (iteration {int(bcd['budget'].iloc[0])}) at CR "
                        f"{', '.join(f'{c:.3g}' for c in capped)}, so its budget binds there")
            cost = (bcd.loc[bcd["cr"] < 1, "macs"].mean() / base.loc[base["cr"] < 1, "macs"].mean()
                    if (base["cr"] < 1).any() else float("nan"))
            secs = (bcd.loc[bcd["cr"] < 1, "seconds"].mean() / base.loc[base["cr"] < 1, "seconds"].mean()
                    if (base["cr"] < 1).any() else float("nan"))
            out.append(Verdict(
                f"(g3) {ds} vs {LABELS[baseline]}", statements["(g3)"],
                f"{src}: 'improved accuracy-efficiency trade-off compared to SGD' on MNIST", decide_interval(iv),
                f"test accuracy, tenBCD vs {LABELS[baseline]} (means over seeds, each at its validation-chosen "
                f"configuration and checkpoint): {per_cr}. Gaps are tenBCD − baseline; {fit}. Cost to the "
                f"chosen checkpoint, tenBCD over the baseline: {cost:.2g}× the multiply-adds, {secs:.2g}× the "
                f"wall time ({d['machine'].iloc[0]})", effect=iv.effect_text(), interval=iv.bounds_text(),
                sizes=f"{cr_text} (mean over the compressed CRs)", datasets=ds,
                seeds=", ".join(str(int(s)) for s in per["seed"]) or "–"))
    return out


def _loaded(inputs: Inputs) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    return inputs.memo(SWEEP, lambda: load_tenbcd(inputs.runs_dir))


def verdicts(inputs: Inputs) -> list[Verdict]:
    return verdict_tenbcd(*_loaded(inputs))


def metrics(inputs: Inputs) -> dict[str, Any]:
    df, _ = _loaded(inputs)
    out: dict[str, dict] = {}
    for (ds, cr, method), g in df.groupby(["dataset", "target_cr", "method"], observed=True):
        out.setdefault(f"{ds}/cr_{cr:g}", {})[str(method)] = round(float(g["test_acc"].mean()), 4)
    return {"tenbcd_test_accuracy": out}


def section(reports_dir: Path) -> list[str]:
    return [
        "## (g) tenBCD: the companion paper (arXiv 2303.06815), tensor-train MLPs by block coordinate descent",
        "",
        "tenBCD against three gradient baselines on the same bias-free MLP with TT-parameterised weights at the "
        "same bond ranks (dense at CR 1): AdamW with cross-entropy, AdamW with the squared loss tenBCD minimises, "
        "and plain SGD with cross-entropy (the companion paper's comparator). Every method searched a grid of the "
        "same size with the same number of validation checkpoints per run on a stratified 20 % validation split "
        "(seed 0); the chosen configuration then ran with every seed. Test accuracy with its 95 % t interval "
        "over seeds, training accuracy beside it, and the cost of training to the chosen checkpoint:",
        "",
        include_table(reports_dir, CR_ACCURACY, NOTEBOOK),
        include_figure(reports_dir, CR_ACCURACY, "tenBCD vs the gradient baselines over compression ratios"),
        include_figure(reports_dir, CONVERGENCE, "tenBCD objective and the O(1/k) check"),
    ]


ARTIFACT = register(Artifact(
    "tenbcd", "the tenBCD study of the companion paper", "companion", notebook=NOTEBOOK, inputs=(f"runs/{SWEEP}",),
    figures=(CR_ACCURACY, CONVERGENCE), tables=(CR_ACCURACY,), claims=("(g1)", "(g2)", "(g3)"),
    verdicts=verdicts, metrics=metrics, section=section))
