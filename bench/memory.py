"""Peak memory of a run of each method against the dense run, each in its own process.

    python -m bench.memory [--quick] [--threads 1] [--device cuda]

Two kinds of child process (``python -m bench.memory --child <json>``), each reporting its peak
resident set (CPU; ``ru_maxrss``) and ``torch.cuda.max_memory_allocated`` (GPU):

* ``run``: ``lowrank.experiment.run_experiment`` of one method on the small profile's task (digits,
  the 64-wide ViT, every attention and MLP Linear targeted), a few epochs from random init;
* ``step``: MiniLM, three AdamW training steps on batch 8 × 128 tokens, dense and in the
  ``U S Vᵀ`` form at 10% of the target parameters, and three inference calls of the dense and of
  the compiled (``A·B``) model: where a method's memory shows at model scale (activations, frozen
  factors, optimizer moments).

The resident set includes the interpreter, PyTorch and the libraries (the ``import`` line, measured
in the same child before any work); the increment over it is what the run itself needed. For the
``step`` children the peak is also taken over the steps alone (``phase_peak_rss_mib``: freed memory
returned to the kernel and the high-water mark reset after the model is built), so the transient
SVDs of the compression do not count against the compressed model's training or inference.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any

import torch

from .common import base_parser, machine, peak_rss_mib, reset_peak_rss, write_report

RUN_BASE = {"dataset": "digits", "model": "vit_digits", "targets": "vit_all", "calibration_samples": 64,
            "train": {"epochs": 3, "batch_size": 64, "eval_batch_size": 512, "random_state": 0}}
METHOD_ARGS = {
    "dense": {},
    "svd": {"rank": 8}, "fwsvd": {"rank": 8}, "tfwsvd": {"rank": 8}, "asvd": {"rank": 8},
    "oialr": {"oialr_frequency": 1, "delay": 1},
    "ieht": {"oialr_frequency": 1, "delay": 1},
    "ifht": {"oialr_frequency": 1, "delay": 1, "fisher_samples": 64},
    "global_ieht": {"oialr_frequency": 1, "delay": 1},
    "global_ifht": {"oialr_frequency": 1, "delay": 1, "fisher_samples": 64},
    "trp": {"trp_frequency": 10}, "fwtrp": {"trp_frequency": 10},
}
QUICK_METHODS = ("dense", "ieht", "trp")
STEP_FORMS = ("dense", "low_rank", "dense_inference", "compiled_inference")


def _child_run(job: dict[str, Any]) -> dict[str, Any]:
    from lowrank.experiment import run_experiment

    spec = {**RUN_BASE, "method": job["method"], "method_args": METHOD_ARGS[job["method"]]}
    spec["train"] = {**spec["train"], "device": job["device"]}
    before = peak_rss_mib()
    with tempfile.TemporaryDirectory() as out:
        final = run_experiment(spec, out, progress=False)
    return {"import_rss_mib": before, "accuracy": final["accuracy"], "wall_s": final.get("wall_seconds"),
            "compression_ratio_target": final["compression_ratio_target"]}


def _child_step(job: dict[str, Any]) -> dict[str, Any]:
    import torch.nn.functional as F

    from lowrank.models import build_model, classifier_logits
    from lowrank.surgery import compile_model, compress_model
    from lowrank.utils import make_generator, set_random_state

    from .common import fraction_rank

    before = peak_rss_mib()
    device = torch.device(job["device"])
    set_random_state(0)
    model = build_model("minilm", num_classes=6).to(device)
    if job["form"] in ("low_rank", "compiled_inference"):
        compress_model(model, "bert_all", method="svd", form="low_rank",
                       rank=lambda n, l: fraction_rank(l.out_features, l.in_features, 0.1, core=True))
    if job["form"] == "compiled_inference":
        compile_model(model)
    g = make_generator(0)
    ids = torch.randint(1000, 20000, (8, 128), generator=g).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    y = torch.randint(0, 6, (8,), generator=g).to(device)
    built = peak_rss_mib()
    windowed = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if job["form"].endswith("inference"):
        model.eval()
        with torch.no_grad():
            for _ in range(3):
                classifier_logits(model, batch)
    else:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(classifier_logits(model, batch), y).backward()
            opt.step()
    out = {"import_rss_mib": before, "built_rss_mib": built,
           "params": sum(p.numel() for p in model.parameters())}
    if windowed:
        out["phase_peak_rss_mib"] = peak_rss_mib()
    return out


def _lifetime_peak_mib() -> float:
    import platform
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if platform.system() == "Darwin" else 1)


def child(job: dict[str, Any]) -> dict[str, Any]:
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    if job["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    res = _child_run(job) if job["kind"] == "run" else _child_step(job)
    res["peak_rss_mib"] = max(peak_rss_mib(), _lifetime_peak_mib())
    res["increment_mib"] = res["peak_rss_mib"] - res["import_rss_mib"]
    if job["device"] == "cuda":
        res["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return res


def spawn(job: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.memory", "--child", json.dumps(job)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict[str, Any]:
    parser = base_parser(__doc__)
    parser.add_argument("--child", default=None, help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return {}
    device = "cuda" if (args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())) else "cpu"
    methods = QUICK_METHODS if args.quick else tuple(METHOD_ARGS)
    report: dict[str, Any] = {"machine": machine(device), "config": {"quick": args.quick, "run": RUN_BASE},
                              "runs": {}, "steps": {}}
    for m in methods:
        report["runs"][m] = spawn({"kind": "run", "method": m, "device": device, "threads": args.threads})
        print(f"[memory] run {m}: {json.dumps(report['runs'][m])}")
    for form in STEP_FORMS:
        report["steps"][form] = spawn({"kind": "step", "form": form, "device": device, "threads": args.threads})
        print(f"[memory] minilm {form}: {json.dumps(report['steps'][form])}")
    key = "cuda_max_memory_allocated_mib" if device == "cuda" else "peak_rss_mib"
    pairs = [("runs", m, "dense") for m in report["runs"]]
    pairs += [("steps", f, "dense_inference" if f.endswith("inference") else "dense") for f in report["steps"]]
    for group, name, base_name in pairs:
        base, entry = report[group].get(base_name, {}), report[group][name]
        if key in entry and key in base:
            entry["peak_vs_dense"] = entry[key] / base[key]
            entry["increment_vs_dense"] = entry["increment_mib"] / max(base["increment_mib"], 1e-9)
        if "phase_peak_rss_mib" in entry and "phase_peak_rss_mib" in base:
            entry["phase_peak_vs_dense"] = entry["phase_peak_rss_mib"] / base["phase_peak_rss_mib"]
    path = write_report("memory", report, args.out)
    print(f"[memory] → {path}")
    return report


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
