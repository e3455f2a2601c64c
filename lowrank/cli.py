"""Command line: ``python -m lowrank <command>``.

    python -m lowrank corpus --cache-dir cache/data --out reports          # build the offline text corpus
    python -m lowrank projection-table --cache-dir cache/data --out reports  # Eq. 4 vs 5 vs 7 on MiniLM

Each command reads its section of ``params.yaml`` (``--params``), validates it before any work and
writes its outputs atomically.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import load_params, stage_params
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
             "| label | " + " | ".join(stats["per_split"]) + " | total |", "|---|" + "---:|" * (len(stats["per_split"]) + 1)]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowrank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, helptext in [("corpus", _corpus, "build the offline text corpus and its statistics"),
                               ("projection-table", _projection_table, "SVD vs FWSVD vs TFWSVD vs ASVD on MiniLM")]:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--params", default="params.yaml")
        p.add_argument("--cache-dir", default="cache/data")
        p.add_argument("--out", default="reports")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
