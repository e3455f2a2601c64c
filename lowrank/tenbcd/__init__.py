"""tenBCD: tensor block coordinate descent for a tensor-train-compressed MLP (the companion paper).

The companion paper "On Model Compression for Neural Networks: Framework, Algorithm, and Convergence
Guarantee" (arXiv 2303.06815) trains an MLP whose weights are tied to tensor trains by exact proximal
block coordinate descent, without gradients.

Usage::

    from lowrank.tenbcd import TenBCDConfig, run_tenbcd, rank_for_compression
    rank, cr = rank_for_compression((40, 256, 256, 10), tt_cores=3, target=0.09)
    cfg = TenBCDConfig(widths=(40, 256, 256, 10), tt_cores=3, tt_rank=rank, gamma=3.0, tau=0.1,
                       alpha=0.003, init_scale=0.3, iterations=100)
    result = run_tenbcd(X, Y, X_test, y_test, cfg)          # columns are samples: X (40, n), Y (10, n)
    result["history"]["objective"], result["test_acc_tt"]

    python -m lowrank tenbcd params:tenbcd.mnist1d --out runs/tenbcd/mnist1d   # the full sweep

Modules (everything public is re-exported here):

* :mod:`~lowrank.tenbcd.algorithm` — the algorithm (Algorithm 1 of the companion paper): configuration,
  compression ratio, state, objective, exact block updates, the run loop; its docstring states the
  objective, the update order and every deviation from the companion paper;
* :mod:`~lowrank.tenbcd.baseline` — AdamW on the same MLP, dense or TT-parameterised;
* :mod:`~lowrank.tenbcd.experiment` — the compression-ratio sweep run by ``python -m lowrank tenbcd``.
"""
from __future__ import annotations

from . import algorithm, baseline, experiment
from .algorithm import (DTYPE, TT_INITS, TenBCDConfig, TenBCDState, accuracy, dense_num_params, forward_dense,
                        forward_tt, init_state, initial_tt, layer_tt_shapes, objective, objective_terms,
                        proximal_distance, rank_for_compression, relu_prox, run_tenbcd, tenbcd_iteration,
                        tt_bond_ranks, tt_compression_ratio, update_tt_cores, update_v_hidden, update_w)
from .baseline import train_adamw
from .experiment import TENBCD_EXPERIMENT_DEFAULTS, run_tenbcd_experiment, validate_tenbcd_experiment

__all__ = [*algorithm.__all__, *baseline.__all__, *experiment.__all__]
