"""The pre-trained bases every compression run starts from (the paper's Table 3–5 "Base Training"; offline we
train our own), and whether each one had converged: a base still improving at the end of its training would
let fine-tuning "improve" on it and confound every comparison made on it.

>>> from study.bases import base_table
>>> from study.runs import load_points
>>> table = base_table(load_points("reports/evidence/runs", "pretrain"))  # one row per base, its convergence check
>>> table["base"].tolist()                 # the committed evidence holds every base's pre-training run
['digits_k0', 'digits_k1', 'digits_k2', 'mnist1d_k0', 'mnist1d_k1', 'mnist1d_k2', 'text']

The bases every compression run starts from are committed (``bases/<name>.safetensors``, the dense state dict
with the pre-training run's numbers in the file's metadata), as the paper compresses a published checkpoint:
last-bit differences between CPUs grow through pre-training, so a base re-trained elsewhere is another base.
The ``pretrain`` stage re-makes them; :func:`compare_bases` says how far the re-made ones land::

    python -m study.bases export runs/pretrain/digits_k0 bases/digits_k0.safetensors
    python -m study.bases compare runs/pretrain bases      # one row per base: accuracies and weight distance
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["CONVERGED_GAIN", "MIN_EPOCHS", "base_table", "convergence_epoch", "export_base", "compare_bases"]

#: a base counts as converged when its test accuracy rose by at most this much over the last quarter of its
#: epochs: one accuracy point, the scale below which the study's single-run differences are noise (the
#: pooled seed-to-seed std of the decisive sweep is of that order)
CONVERGED_GAIN = 0.01
#: below this many epochs (evaluated once each) the last quarter holds no evaluation of its own to compare
MIN_EPOCHS = 4


def _at(epochs: pd.DataFrame, fraction: float) -> float:
    """Test accuracy after the epoch closest to ``fraction`` of the run (at least epoch 1)."""
    last = int(epochs["epoch"].max())
    e = max(1, int(round(fraction * last)))
    return float(epochs.loc[(epochs["epoch"] - e).abs().idxmin(), "accuracy"])


def base_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per base of ``runs/pretrain`` (its evaluation records, :func:`study.runs.load_points`): the
    dataset, model, seed, epochs, test accuracy at 50 %, 75 % and 100 % of its epochs, the gain over the last
    quarter and the convergence check (gain ≤ :data:`CONVERGED_GAIN`)."""
    cols = ["base", "dataset", "model", "seed", "epochs", "acc @50%", "acc @75%", "final", "last-quarter gain",
            "converged"]
    if points.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for run, g in points.groupby("run", sort=True):
        ep = g[g["kind"] == "epoch"].dropna(subset=["accuracy"])
        fin = g[g["kind"] == "final"]
        final = float(fin["accuracy"].iloc[-1]) if len(fin) else (float(ep["accuracy"].iloc[-1]) if len(ep) else np.nan)
        if ep.empty:
            # evaluation only (no training epochs): nothing to converge
            rows.append({"base": run, "dataset": g["dataset"].iloc[0], "model": g["model"].iloc[0],
                         "seed": g["random_state"].iloc[0], "epochs": 0, "acc @50%": np.nan, "acc @75%": np.nan,
                         "final": final, "last-quarter gain": np.nan, "converged": "not trained"})
            continue
        a75 = _at(ep, 0.75)
        gain = final - a75
        last = int(ep["epoch"].max())
        rows.append({"base": run, "dataset": g["dataset"].iloc[0], "model": g["model"].iloc[0],
                     "seed": g["random_state"].iloc[0], "epochs": int(ep["epoch"].max()), "acc @50%": _at(ep, 0.5),
                     "acc @75%": a75, "final": final, "last-quarter gain": gain,
                     "converged": (f"not checked: {last} epochs (evaluated once per epoch)" if last < MIN_EPOCHS
                                   else "yes" if gain <= CONVERGED_GAIN else "no: still improving")})
    return pd.DataFrame(rows, columns=cols)


def convergence_epoch(log: list[dict], tol: float = 1.0 / 270) -> int:
    """The first epoch after which a run's validation accuracy stays within ``tol`` of its final value: how
    long the base took to converge (Section 5.2 asks each rank level to be trained about as long). The
    default ``tol`` is one digits validation sample (1/270)."""
    ep = [r for r in log if r.get("kind") == "epoch" and r.get("val_accuracy") is not None]
    if not ep:
        raise ValueError("no epoch record with val_accuracy: the run had no validation split")
    final = ep[-1]["val_accuracy"]
    first = len(ep)
    for i in range(len(ep) - 1, -1, -1):
        if abs(ep[i]["val_accuracy"] - final) > tol + 1e-12:
            break
        first = i
    return int(ep[first]["epoch"])


def _read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]


def export_base(run_dir: str | Path, out: str | Path) -> Path:
    """Write a pre-training run's dense model as ``out`` (safetensors; no pickle), with its spec, test and
    validation accuracy, step count and convergence epoch in the metadata."""
    import torch
    from safetensors.torch import save_file

    from lowrank.utils import atomic_write_bytes

    run_dir, out = Path(run_dir), Path(out)
    state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    if state.get("structure"):
        raise ValueError(f"{run_dir}: a base must be dense; this model has factorised layers "
                         f"{sorted(state['structure'])}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log = _read_log(run_dir)
    last = [r for r in log if r.get("kind") == "final"][-1]
    meta = {"spec": json.dumps(metrics["spec"], sort_keys=True), "test_accuracy": repr(metrics["accuracy"]),
            "val_accuracy": repr(last.get("val_accuracy")), "steps": str(last["step"]),
            "convergence_epoch": str(convergence_epoch(log)),
            "steps_per_epoch": str(last["step"] // max(last["epoch"], 1))}
    tensors = {k: v.contiguous() for k, v in state["model"].items()}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_file(tensors, str(Path(tmp) / "base.safetensors"), metadata=meta)
        atomic_write_bytes(out, (Path(tmp) / "base.safetensors").read_bytes())
    return out


def compare_bases(runs_dir: str | Path, bases_dir: str | Path) -> pd.DataFrame:
    """Each re-made base of ``runs_dir`` (``<name>/model.pt``) against the committed ``bases_dir/<name>.safetensors``:
    both test accuracies, the relative weight distance ‖Δθ‖/‖θ‖, and whether they are bit-identical."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    rows = []
    for committed in sorted(Path(bases_dir).glob("*.safetensors")):
        name = committed.stem
        run = Path(runs_dir) / name
        with safe_open(str(committed), "pt") as f:
            meta = f.metadata() or {}
        row = {"base": name, "committed test acc": float(meta.get("test_accuracy", "nan")),
               "re-made test acc": np.nan, "relative weight distance": np.nan, "bit-identical": "not re-made"}
        if (run / "model.pt").is_file():
            ref = load_file(str(committed))
            new = torch.load(run / "model.pt", map_location="cpu", weights_only=True)["model"]
            num = sum(float((new[k].double() - ref[k].double()).pow(2).sum()) for k in ref)
            den = sum(float(ref[k].double().pow(2).sum()) for k in ref)
            row.update({"re-made test acc": json.loads((run / "metrics.json").read_text())["accuracy"],
                        "relative weight distance": (num / den) ** 0.5,
                        "bit-identical": "yes" if all(torch.equal(new[k], ref[k]) for k in ref) else "no"})
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m study.bases", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="a pre-training run's model as a committed base")
    e.add_argument("run_dir")
    e.add_argument("out")
    c = sub.add_parser("compare", help="re-made bases against the committed ones")
    c.add_argument("runs_dir")
    c.add_argument("bases_dir")
    c.add_argument("--out", help="write the table as markdown here")
    a = ap.parse_args(argv)
    if a.cmd == "export":
        print(export_base(a.run_dir, a.out))
        return 0
    table = compare_bases(a.runs_dir, a.bases_dir)
    text = table.to_markdown(index=False, floatfmt=".4g")
    if a.out:
        from lowrank.utils import atomic_write_text

        atomic_write_text(Path(a.out), text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
