"""opfact's core library: low-rank projections, Fisher estimation, factorised layers, model surgery and the
iterative compression loops of "On Information Geometry and Iterative Optimization in Model Compression:
Operator Factorization" (arXiv 2507.09428).

Heavy optional parts (datasets, models, the training loop) are imported lazily by their modules;
the names below are the pure-maths core and the public API for compressing one's own model:
:func:`compress` (one-shot, ``targets="auto"``), :func:`save_compressed` / :func:`load_compressed` /
:func:`from_pretrained` (a compressed folder in one call),
and :class:`IterativeCompressor` / :class:`LowRankTrainerCallback` (the iterative methods in any loop;
loaded on first use). The paper's tables, figures and claim verdicts are not part of the
library: they live in the repository's ``study`` package (one module per paper artifact), which imports
this one, never the other way round.
"""
from .api import CompressResult, compress
from .layers import FactorizedLinear, LowRankLinear, TTLinear, factorization_pays
from .linalg import (LowRankFactors, activation_aware_projection, element_weighted_projection, orthonormalize,
                     project, row_weighted_projection, select_rank, truncated_svd)
from .surgery import (TARGET_PRESETS, compile_model, compress_model, compress_model_tt, count_parameters,
                      find_linear_layers, to_low_rank)
from .serialization import from_pretrained, load_compressed, save_compressed
from .targets import auto_targets
from .tt import TTShape, row_weighted_tt, tt_svd

__version__ = "0.1.0"

__all__ = [
    "FactorizedLinear", "LowRankLinear", "TTLinear", "factorization_pays",
    "LowRankFactors", "truncated_svd", "select_rank", "row_weighted_projection", "element_weighted_projection",
    "activation_aware_projection", "orthonormalize", "project",
    "TARGET_PRESETS", "find_linear_layers", "compress_model", "compile_model", "count_parameters", "to_low_rank",
    "compress_model_tt", "TTShape", "tt_svd", "row_weighted_tt",
    "compress", "CompressResult", "auto_targets", "save_compressed", "load_compressed",
    "from_pretrained",
    "IterativeCompressor", "LowRankTrainerCallback",
]

# The iterative driver imports the methods (and through them the data package): loaded on first use.
_LAZY = {"IterativeCompressor": "iterative", "LowRankTrainerCallback": "iterative"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
