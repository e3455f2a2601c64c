"""Command line: ``python -m tenbcd <spec> --out <folder>``, the tenBCD study of one dataset.

    python -m tenbcd params:tenbcd.mnist1d --out runs/tenbcd/mnist1d     # a spec kept in params.yaml
    python -m tenbcd my_spec.yaml --out runs/tenbcd/mine                  # or a YAML/JSON file

The spec is resolved like the library's run specs (:func:`lowrank.config.load_spec`: ``inherit:`` and the
profile's section), validated before any work (:func:`tenbcd.validate_tenbcd_experiment`), and the outputs are
written atomically.
"""
from __future__ import annotations

import argparse
import sys

from lowrank.config import load_spec

from .experiment import run_tenbcd_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenbcd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="YAML/JSON spec file, or params:<dotted.key> in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--cache-dir", default=None, help="dataset cache (default: the library's cache folder)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec, args.params)
        metrics = run_tenbcd_experiment(spec, args.out, cache_dir=args.cache_dir, progress=not args.quiet)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for sel in metrics["selected"]:
        accs = ", ".join(f"{r['test_acc']:.3f}" for r in sel["per_seed"])
        print(f"CR {sel['cr']:.3f} {sel['method']}: {sel['config']} at {sel['unit']} {sel['checkpoint']}; "
              f"test accuracy per seed {accs}")
    print(f"tenbcd: {metrics['dataset']} → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
