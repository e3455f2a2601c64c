"""tenBCD: tensor block coordinate descent for a tensor-train-compressed MLP (the companion paper).

The companion paper "On Model Compression for Neural Networks: Framework, Algorithm, and Convergence
Guarantee" (arXiv 2303.06815) trains an MLP whose weights are tied to tensor trains by exact proximal
block coordinate descent, without gradients. This package holds its algorithm and the study that compares it
with gradient training; it uses the library's tensor-train code (:mod:`lowrank.tt`, :class:`lowrank.layers.TTLinear`)
and the library never imports it, so the study of the companion paper can change without touching the runs of
the paper's study (whose pipeline stages depend on ``lowrank/`` as a whole).

Usage::

    from tenbcd import TenBCDConfig, run_tenbcd, rank_for_compression
    rank, cr = rank_for_compression((40, 256, 256, 10), tt_cores=3, target=0.09)
    cfg = TenBCDConfig(widths=(40, 256, 256, 10), tt_cores=3, tt_rank=rank, gamma=3.0, tau=0.1,
                       alpha=0.003, alpha_uv=1.0, weight_decay=1e-3, init_scale=0.3, iterations=100)
    result = run_tenbcd(X, Y, X_test, y_test, cfg)          # columns are samples: X (40, n), Y (10, n)
    result["history"]["objective"], result["test_acc_tt"]

    python -m tenbcd params:tenbcd.mnist1d --out runs/tenbcd/mnist1d   # the study on one dataset

Modules (everything public is re-exported here):

* :mod:`~tenbcd.algorithm` — the algorithm (Algorithm 1 of the companion paper): configuration,
  compression ratio, state, objective, exact block updates, the run loop; its docstring states the
  objective, the update order and every deviation from the companion paper;
* :mod:`~tenbcd.baselines` — gradient training of the same MLP (AdamW / SGD, cross-entropy / squared loss),
  dense or TT-parameterised;
* :mod:`~tenbcd.cost` — multiply-adds of a run, counted;
* :mod:`~tenbcd.experiment` — the study: validation split, equal grids, choice on validation, seeds.
"""
from __future__ import annotations

from . import algorithm, baselines, cost, experiment
from .algorithm import (DTYPE, TT_INITS, TenBCDConfig, TenBCDState, accuracy, dense_num_params, forward_dense,
                        forward_tt, init_state, initial_tt, layer_tt_shapes, objective, objective_terms,
                        proximal_distance, proximal_term, rank_for_compression, relu_prox, run_tenbcd,
                        tenbcd_iteration, tt_bond_ranks, tt_compression_ratio, update_tt_cores, update_v_hidden,
                        update_w)
from .baselines import BASELINES, LOSSES, OPTIMIZERS, train_baseline
from .cost import FACTORISATION_MACS, count_macs, machine
from .experiment import (METHODS, TENBCD_EXPERIMENT_DEFAULTS, choose_checkpoint, expand_grid, run_tenbcd_experiment,
                         split_validation, validate_tenbcd_experiment)

__all__ = [*algorithm.__all__, *baselines.__all__, *cost.__all__, *experiment.__all__]
