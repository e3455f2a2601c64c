"""One one-shot path: a one-shot method in the training loop and :func:`lowrank.compress` measure the same
statistics through the same forward and project identically (:mod:`lowrank.projection`)."""
from __future__ import annotations

import copy

import pytest
import torch

from lowrank import compress

from .test_protocol import make_trainer
from .test_train import base, cache  # noqa: F401  (module fixtures: a tiny pre-trained ViT)


def _no_training_forward(model, batch):
    raise AssertionError("a one-shot projection measured its statistics through the training forward")


@pytest.mark.parametrize("method, args, kwargs", [
    # the empirical Fisher needs the batch's labels: the Fisher forward (default_forward) returns them, the
    # training forward (logits only) does not
    ("fwsvd", {"rank": 5, "fisher_labels": "empirical"}, {"projection_kwargs": {"axis": "rows"},
                                                          "fisher_labels": "empirical"}),
    ("fwsvd", {"params_fraction": 0.3, "rank_rule": "energy"}, {"projection_kwargs": {"axis": "rows"}}),
    ("tfwsvd", {"rank": 5}, {"projection_kwargs": {"tol": 1e-6}}),
    ("asvd", {"rank": 5}, {"projection_kwargs": {"ridge": 1e-4}}),
    ("asvd", {"params_fraction": 0.3, "rank_rule": "energy"}, {"projection_kwargs": {"ridge": 1e-4}}),
    ("svd", {"params_fraction": 0.3}, {}),
    ("fwttm", {"tt_rank": 3, "tt_cores": 2}, {"tt_cores": 2}),
])
def test_the_loop_and_compress_project_identically(method, args, kwargs, base, cache):  # noqa: F811
    """Same base, same calibration batches, same random state: the same weights, bit for bit, and the same energy
    threshold; the loop's training forward is never called for the statistics."""
    t = make_trainer(method, args, base, cache, epochs=1)
    dense = copy.deepcopy(t.model)
    t.forward = _no_training_forward
    t.method.setup(t)
    rank = args.get("rank", args.get("tt_rank"))
    fraction = args.get("params_fraction")
    calib = t.calibration_loader() if method != "svd" else None
    _, rep = compress(dense, method=method, rank=rank, params_fraction=fraction,
                      rank_rule=args.get("rank_rule", "uniform"), calibration=calib, targets=t.target_names,
                      random_state=t.random_state, **kwargs)
    assert t.module_ranks() == {n: (max(r) if isinstance(r, tuple) else r) for n, r in rep.ranks.items()}
    if args.get("rank_rule") == "energy":
        assert t.method.energy_beta == rep.energy_beta
    got, want = t.model.state_dict(), dense.state_dict()
    assert got.keys() == want.keys()
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)
