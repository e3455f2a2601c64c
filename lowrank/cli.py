"""Command line: ``python -m lowrank <command>``.

    python -m lowrank corpus --cache-dir cache/text --out reports          # build the offline text corpus
    python -m lowrank projection-table --cache-dir cache/text --out reports  # Eq. 4 vs 5 vs 7 on MiniLM
    python -m lowrank run spec.yaml --out runs/ieht                         # one training/compression run
    python -m lowrank run params:experiments.ieht_digits --out runs/ieht    # a spec kept in params.yaml
    python -m lowrank sweep params:seeds.digits_k0 --out runs/seeds/digits_k0  # a run group, one process
    python -m lowrank sweep params:seeds.digits_k0 --out runs/seeds/digits_k0 --executor slurm  # a job array
    torchrun --nproc_per_node 2 -m lowrank run spec.yaml --out runs/ieht    # the same run under DDP
    python -m lowrank compress --model DIR_OR_TIMM_NAME --method fwsvd --params-fraction 0.25 \\
        --calibration digits --out compressed/                           # a checkpoint on disk (one shot)
    python -m lowrank compress --model GPT2_DIR --method fwsvd --params-fraction 0.5 \\
        --calibration corpus.txt --out compressed/     # own text; a causal LM's perplexity before and after

Each command reads its section of ``params.yaml`` (``--params``; ``inherit:`` and the profile's
section resolved by :func:`lowrank.config.resolve_spec`), validates it before any work and writes its
outputs atomically. A user error (a bad key or value, a missing file, a run folder in use) is one line on
stderr and exit status 2; a run that diverges (a non-finite loss) is one line and exit status 1.
``--debug`` (or ``OPFACT_DEBUG=1``) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .checkpoint import DEFAULT_CACHE_DIR
from .config import load_group, load_params, load_spec, stage_params
from .utils import atomic_write_json, atomic_write_text


def _corpus(args) -> None:
    from .data import build_text_corpus, corpus_stats

    cfg = stage_params(load_params(args.params), "corpus")
    per_label = int(cfg.get("per_label", 900))
    random_state = int(cfg.get("random_state", 0))
    build_text_corpus(args.cache_dir, per_label=per_label)
    stats = corpus_stats(args.cache_dir, random_state=random_state, per_label=per_label)
    out = Path(args.out)
    atomic_write_json(out / "tables" / "text_corpus.json", stats)
    lines = ["# Offline text corpus (docstring paragraphs labelled by library)", "",
             f"{stats['size']} paragraphs, {len(stats['labels'])} labels, mean {stats['mean_words']:.1f} words "
             f"(min {stats['min_words']}, max {stats['max_words']}).", "",
             "| label | " + " | ".join(stats["per_split"]) + " | total |",
             "|---|" + "---:|" * (len(stats["per_split"]) + 1)]
    for lab in stats["labels"]:
        counts = [stats["per_split_label"][s][lab] for s in stats["per_split"]]
        lines.append(f"| {lab} ({stats['versions'][lab]}) | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |")
    atomic_write_text(out / "tables" / "text_corpus.md", "\n".join(lines) + "\n")
    print(f"corpus: {stats['size']} paragraphs → {out / 'tables' / 'text_corpus.md'}")


def _projection_table(args) -> None:
    from .projection_table import run_projection_table

    cfg = stage_params(load_params(args.params), "projection_table")
    res = run_projection_table(cfg, args.out, cache_dir=args.cache_dir, progress=not args.quiet)
    print(f"projection table: {len(res['rows'])} rows → {Path(args.out) / 'tables' / 'projection_minilm.md'}")


def _run(args) -> None:
    import os

    import torch.distributed as dist

    from .experiment import run_experiment

    spec = load_spec(args.spec, args.params)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        final = run_experiment(spec, args.out, cache_dir=args.cache_dir, progress=not args.quiet)
    finally:
        if distributed:
            dist.destroy_process_group()
    print(f"{spec.get('method', 'dense')}: accuracy {final['accuracy']:.4f}, "
          f"target params {100 * final['compression_ratio_target']:.1f}% → {args.out}")


def _sweep(args) -> None:
    from .experiment import run_group

    if args.executor == "local":
        finals = run_group(load_group(args.spec, args.params), args.out, cache_dir=args.cache_dir,
                           progress=not args.quiet)
    else:   # one job array, one task per run (lowrank/cluster.py)
        from .cluster import resources_for, run_sweep

        key = args.spec.removeprefix("params:")
        finals = run_sweep(load_group(args.spec, args.params), args.out, kind=args.executor, name=key,
                           resources=resources_for(load_params(args.params), key.split(".")[0]),
                           log_dir=args.log_dir, cache_dir=args.cache_dir)
    for name, final in finals.items():
        print(f"{name}: accuracy {final['accuracy']:.4f}, target params "
              f"{100 * final['compression_ratio_target']:.1f}%")
    print(f"{len(finals)} runs → {args.out}")


def _compress(args) -> None:
    import json

    from .checkpoint import compress_checkpoint

    try:
        model_args = json.loads(args.model_args) if args.model_args else None
    except json.JSONDecodeError as err:
        raise ValueError(f"--model-args {args.model_args!r} is not JSON ({err}); allowed: a JSON object") from None
    if model_args is not None and not isinstance(model_args, dict):
        raise ValueError(f"--model-args {args.model_args!r} must be a JSON object")
    report = compress_checkpoint(model=args.model, method=args.method, out=args.out, rank=args.rank,
                                 params_fraction=args.params_fraction, rank_rule=args.rank_rule,
                                 calibration=args.calibration, calibration_column=args.calibration_column,
                                 calibration_samples=args.calibration_samples, batch_size=args.batch_size,
                                 targets=args.targets, model_args=model_args, weights=args.weights,
                                 pretrained=args.pretrained, tt_cores=args.tt_cores, repeats=args.repeats,
                                 perplexity_tokens=args.perplexity_tokens, cache_dir=args.cache_dir,
                                 random_state=args.random_state, echo=print)
    c = report["compression"]
    speed = report["inference"]
    timing = f", inference {speed['speedup']:.2f}× dense" if isinstance(speed, dict) else ""
    ppl = report.get("perplexity")   # causal LMs only
    ppl = "" if ppl is None else f", perplexity {ppl['before']:.2f} → {ppl['after']:.2f}" \
        if isinstance(ppl, dict) else f", perplexity {ppl}"
    print(f"{args.method}: {len(c['ranks'])} layers factorised, target params {100 * c['achieved_fraction']:.1f}%, "
          f"whole model {100 * c['achieved_fraction_total']:.1f}% of its parameters{ppl}{timing} → {args.out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowrank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, helptext in [("corpus", _corpus, "build the offline text corpus and its statistics"),
                               ("projection-table", _projection_table, "SVD vs FWSVD vs TFWSVD vs ASVD on MiniLM")]:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--params", default="params.yaml")
        p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
        p.add_argument("--out", default="reports")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(fn=fn)
    p = sub.add_parser("run", help="one training / compression run")
    p.add_argument("spec", help="YAML/JSON spec file, or params:<dotted.key> in params.yaml")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=_run)
    p = sub.add_parser("sweep", help="a group of runs (params.yaml mapping with a `runs:` key), one process")
    p.add_argument("spec", help="YAML/JSON file, or params:<dotted.key> in params.yaml, holding `runs:`")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--executor", default="local", choices=("local", "submitit-local", "slurm"),
                   help="local: one process (default); slurm: one job array, a task per run")
    p.add_argument("--log-dir", default="logs/sweep", help="the job array's logs (with --executor slurm)")
    p.set_defaults(fn=_sweep)
    p = sub.add_parser("compress", help="one-shot compression of a timm / Hugging Face checkpoint on disk")
    p.add_argument("--model", required=True, help="a Hugging Face model folder or a timm model name")
    p.add_argument("--method", required=True, help="svd | fwsvd | tfwsvd | asvd | ttm | fwttm")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--params-fraction", type=float, help="compressed / dense target parameters, in (0, 1]")
    size.add_argument("--rank", type=int, help="one rank for every target layer (TT: the bond-rank cap)")
    p.add_argument("--rank-rule", default="uniform", help="uniform | energy (with --params-fraction)")
    p.add_argument("--calibration", help="a registry dataset (digits, text, cifar10, glue:<task>, ...), a "
                                         ".safetensors file of named tensors, a UTF-8 text file (one sample per "
                                         "non-empty line) or a datasets save_to_disk folder. Held out for perplexity "
                                         "(causal LMs): a file's or folder's last tenth (a folder's validation/test "
                                         "split), a registry text set's validation split, a token file's rows after "
                                         "the calibration rows")
    p.add_argument("--calibration-column", help="the text column of a datasets folder (default: 'text', else the "
                                                "only string column)")
    p.add_argument("--calibration-samples", type=int, default=256,
                   help="samples the statistics are measured on (default 256)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--perplexity-tokens", type=int, default=4096,
                   help="held-out tokens a causal LM's perplexity is measured on, before and after (default 4096)")
    p.add_argument("--targets", default="auto", help="auto (default), a preset or a name pattern")
    p.add_argument("--model-args", help="JSON object of timm.create_model keyword arguments")
    p.add_argument("--weights", help="a safetensors state dict for a timm model")
    p.add_argument("--pretrained", action="store_true", help="timm's pretrained weights (download or cache)")
    p.add_argument("--tt-cores", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20, help="timed forward passes per model")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                   help=f"where registry datasets are built or downloaded (default: {DEFAULT_CACHE_DIR}, in the "
                        f"working directory); printed, and listed in report.json, when something is written there")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_compress)
    for p in (parser, *sub.choices.values()):   # before or after the command; a command's default must not reset it
        p.add_argument("--debug", action="store_true", default=False if p is parser else argparse.SUPPRESS,
                       help="show the traceback of an error (or OPFACT_DEBUG=1)")
    args = parser.parse_args(argv)
    if args.debug or os.environ.get("OPFACT_DEBUG", "") not in ("", "0"):
        args.fn(args)
        return 0
    try:
        args.fn(args)
    except ValueError as err:   # the library's user errors: what, which key / value, what is allowed
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:   # a path that cannot be read or written
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:   # a diverged run
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
