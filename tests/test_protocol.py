"""Fair comparisons: every logged point is scored at the size of the model that produced it, the
training protocol of the paper (constant learning rate, cut schedules), TRP's nuclear-norm term,
``fisher_samples`` used, and every method key doing something or being refused."""
import copy
import math
import hashlib
import json

import pytest
import torch
import torch.nn as nn

from lowrank.data import calibration_subset, get_dataset
from lowrank.experiment import load_base, validate_spec
from lowrank.fisher import row_weights
from lowrank.layers import LowRankLinear
from lowrank.methods import METHODS, build_method
from lowrank.methods.iht import fisher_row_weights
from lowrank.models import build_model, classifier_logits
from lowrank.surgery import compile_model
from lowrank.train import TRAIN_DEFAULTS, Trainer

from .test_train import TINY, base, cache, spec  # noqa: F401  (module fixtures: a tiny pre-trained ViT)

#: the smallest working configuration of every registered method (the registry is the list: a new method
#: without an entry here fails test_every_method_has_a_configuration)
MINIMAL = {
    "dense": {},
    "svd": {"rank": 2}, "fwsvd": {"rank": 2}, "tfwsvd": {"rank": 2}, "asvd": {"rank": 2},
    "ttm": {"tt_rank": 2}, "fwttm": {"tt_rank": 2},
    "trp": {"trp_threshold": 0.8, "trp_frequency": 5}, "fwtrp": {"trp_threshold": 0.8, "trp_frequency": 5},
    **{m: {"oialr_threshold": 0.3 if m == "oialr" else 0.8, "oialr_frequency": 3, "oialr_type": "step", "delay": 0}
       for m in ("oialr", "ieht", "ifht", "global_ieht", "global_ifht")},
}
TRAIN_SAMPLES = 256   # 4 steps per epoch at batch 64: enough for several cuts in 3 epochs, fast


def make_trainer(method, args, base, cache, epochs=3, **train):  # noqa: F811
    s = validate_spec(spec(method, args, base, epochs=epochs, **train))
    model = build_model("vit_digits", num_classes=10, **TINY)
    load_base(model, base)
    tr = get_dataset("digits", "train", cache_dir=cache)
    te = get_dataset("digits", "test", cache_dir=cache)
    return Trainer(model, build_method(method, args), calibration_subset(tr, TRAIN_SAMPLES, random_state=1), te,
                   s["train"], targets="blocks.*", calib_set=calibration_subset(tr, 64), progress=False)


def test_every_method_has_a_configuration():
    assert set(MINIMAL) == set(METHODS)


def target_size(model: nn.Module, names) -> int:
    """Parameters of the target layers of a model in its inference form (counted, not computed)."""
    return sum(sum(p.numel() for p in model.get_submodule(n).parameters()) for n in names)


@pytest.mark.parametrize("method", sorted(MINIMAL))
def test_every_logged_point_has_the_size_of_the_model_that_produced_it(method, base, cache):  # noqa: F811
    """Build the model each evaluation scored, compile it, count it: that is the logged size; and its
    accuracy is the logged accuracy."""
    t = make_trainer(method, MINIMAL[method], base, cache)
    seen = []

    def check(model, rec):
        inference = copy.deepcopy(model)
        compile_model(inference)   # U S Vᵀ → A·B (or dense where A·B would not pay); others are as they are
        assert not any(isinstance(m, LowRankLinear) for m in inference.modules())
        assert target_size(inference, t.target_names) == rec["params_target_compiled"], (rec["kind"], rec["epoch"])
        acc = t.evaluate(inference).accuracy
        # compiling re-associates U S Vᵀ as A·B: logits move by rounding (~1e-6 relative in float32), which can
        # flip only a near-tied example; one flip is 1/n
        assert abs(acc - rec["accuracy"]) <= 1.0 / len(t.eval_set) + 1e-12, (rec["kind"], rec["epoch"])
        seen.append(rec["kind"])

    t.eval_hook = check
    t.fit()
    assert seen[0] == "start" and seen.count("epoch") == 3
    if method in ("trp", "fwtrp"):
        # after the first truncation, points are the truncated compiled copy, not the dense weights
        later = [r for r in t.log if r["kind"] == "epoch" and r["step"] >= MINIMAL[method]["trp_frequency"]]
        assert later and all(r["compression_ratio_target"] < 1 and "accuracy_training_form" in r for r in later)


def test_the_default_learning_rate_is_constant_as_in_the_paper(base, cache):  # noqa: F811
    assert TRAIN_DEFAULTS["lr_schedule"] == "constant"
    t = make_trainer("ieht", MINIMAL["ieht"], base, cache, warmup_steps=4)
    lrs = [t.lr_at(s) for s in range(t.total_steps)]
    assert lrs[:4] == [1e-3 * (s + 1) / 4 for s in range(4)]            # the optional linear warm-up
    assert set(lrs[4:]) == {1e-3}                                        # then the base rate to the end
    c = make_trainer("ieht", MINIMAL["ieht"], base, cache, lr_schedule="cosine")
    n = c.total_steps                                                    # the alternative: cosine to 0
    assert [c.lr_at(s) for s in range(n)] == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * s / n))
                                                            for s in range(n)], rel=1e-12)


def test_cut_until_ends_the_run_with_a_recovery_tail(base, cache):  # noqa: F811
    args = {**MINIMAL["ieht"], "oialr_frequency": 2, "cut_until": 6}
    t = make_trainer("ieht", args, base, cache)
    t.fit()
    cuts = [e["step"] for e in t.method.trajectory if e["event"] == "cut"]
    assert cuts == [2, 4, 6]                                             # none after step 6 of 12
    for bad, match in ((0, r"cut_until=0 must be null or an int > delay=0"), (1.5, "cut_until=1.5")):
        with pytest.raises(ValueError, match=match):
            build_method("ieht", {**MINIMAL["ieht"], "cut_until": bad})


def test_fisher_samples_is_exactly_the_number_of_examples_the_fisher_sees(base, cache):  # noqa: F811
    """IFHT's row weights with ``fisher_samples = N`` equal a brute-force empirical Fisher over the first N
    calibration examples (one backward per example), and differ from N + 1's."""
    n = 5
    t = make_trainer("ifht", {**MINIMAL["ifht"], "fisher_samples": n, "fisher_labels": "empirical"}, base, cache)
    names = t.target_names[:2]
    got = fisher_row_weights(t, names, samples=n, labels="empirical")
    model = copy.deepcopy(t.model).double().eval()
    ref = {k: torch.zeros(model.get_submodule(k).weight.shape[0], dtype=torch.float64) for k in names}
    for i in range(n + 1):
        x, y = t.calib_set[i]
        model.zero_grad()
        logp = torch.log_softmax(classifier_logits(model, x[None].double()), -1)[0, int(y)]
        logp.backward()
        for k in names:
            ref[k] += row_weights(model.get_submodule(k).weight.grad ** 2)
        if i == n - 1:
            first_n = {k: v.clone() for k, v in ref.items()}
    for k in names:
        # float32 forward (the library's model) against float64: per-sample gradients agree to ~1e-6 relative
        torch.testing.assert_close(got[k], first_n[k], rtol=1e-4, atol=1e-4 * float(first_n[k].max()))
        assert not torch.allclose(got[k], ref[k], rtol=1e-4, atol=1e-4 * float(first_n[k].max()))
    with pytest.raises(ValueError, match=r"fisher_samples=65 exceeds the calibration set \(64 samples\)"):
        make_trainer("ifht", {**MINIMAL["ifht"], "fisher_samples": 65}, base, cache)


# ------------------------------------------------------------------------------------------ TRP
def test_trp_nuclear_norm_enters_the_gradient_every_step(base, cache):  # noqa: F811
    """``gradient`` mode: what AdamW sees is the loss gradient plus λ G (the TRP paper's regulariser)."""
    lam = 0.05
    t = make_trainer("trp", {**MINIMAL["trp"], "nuclear_norm_weight": lam}, base, cache)
    t.method.setup(t)
    t.build_optimizer()
    t.step = 5
    t.method.after_step(t)                       # a truncation: saves G
    name = t.target_names[0]
    w = t.model.get_submodule(name).weight
    G = t.method.G[name]
    # G = U_k V_kᵀ is stored in float32: its rounding (~eps32) sits above float64's default rank tolerance
    assert torch.linalg.matrix_rank(G, rtol=64 * torch.finfo(G.dtype).eps) == t.method.current[name]
    x, y = next(iter(t.train_loader(0)))
    torch.nn.functional.cross_entropy(classifier_logits(t.model, x), y).backward()
    loss_grad = w.grad.clone()
    t.method.before_optimizer_step(t)
    torch.testing.assert_close(w.grad, loss_grad + lam * G, rtol=0, atol=4 * torch.finfo(w.dtype).eps * lam)
    # G is the sub-gradient of ‖W_k‖_*: ⟨G, W_k⟩ = ‖W_k‖_* (the kept singular values' sum)
    Wk = w.detach().double()
    s = torch.linalg.svdvals(Wk)[: t.method.current[name]]
    assert float((G.double() * Wk).sum()) == pytest.approx(float(s.sum()), rel=1e-5)


def test_trp_step_mode_is_the_literal_reading_and_is_inert_at_table3_values(base, cache):  # noqa: F811
    """``step`` mode moves W by exactly lr·λ·G; at Table 3's λ = 3e-4 that is ~1e-7 of W per application."""
    t = make_trainer("trp", {**MINIMAL["trp"], "trp_frequency": 10, "nuclear_norm_weight": 3e-4,
                             "nuclear_norm_mode": "step", "nuclear_norm_frequency": 5}, base, cache)
    t.method.setup(t)
    t.build_optimizer()
    t.step = 5
    name = t.target_names[0]
    w = t.model.get_submodule(name).weight
    t.method._truncate_all(t)
    before = w.detach().clone()
    t.method.after_step(t)                       # step 5: no truncation (every 10), a nuclear-norm step (every 5)
    G = t.method.G[name]
    moved = before - w.detach()
    # W − lr·λ·G in float32: one rounding of W per entry
    tol = 2 * torch.finfo(w.dtype).eps * float(before.abs().max())
    torch.testing.assert_close(moved, t.lr_at(5) * 3e-4 * G, rtol=0, atol=tol)
    assert float(moved.norm() / before.norm()) < 1e-5


# ------------------------------------------------------------------------------------------ every key
#: for each method key, a value other than the default (per method where it must differ) that must change
#: what the method does; a key missing here fails test_every_method_key_has_a_variant
VARIANTS = {
    "rank": 3, "train": "core", "fisher_labels": "empirical", "fwsvd_axis": "columns", "asvd_ridge": 10.0,
    "tfwsvd_tol": 0.5,
    "tt_rank": 3, "tt_cores": 2, "fwttm_sweeps": 1,
    "trp_threshold": 0.6, "trp_frequency": 3, "nuclear_norm_weight": 0.05, "nuclear_norm_frequency": 1,
    "nuclear_norm_mode": "step", "oialr_depth_schedule": "increasing", "oialr_min_rank_percent": 0.5,
    "fisher_samples": 16, "oialr_threshold": 0.6, "oialr_frequency": 2, "oialr_type": "epoch", "delay": 2,
    "max_cut_fraction": 0.05, "cut_until": 4,
    # beside MINIMAL's rank these are refused (one size only); what a params_fraction does is tested in
    # tests/test_train.py (the ranks lowrank.compress chooses)
    "params_fraction": 0.3, "rank_rule": "energy",
}


def method_keys():
    return [(m, k) for m in sorted(MINIMAL) for k in METHODS[m].keys_for(m)]


def test_every_method_key_has_a_variant():
    missing = sorted({k for _, k in method_keys()} - set(VARIANTS))
    assert not missing, f"add a behaviour-changing value for {missing} to VARIANTS"


def fingerprint(method, args, base, cache, **train) -> str:  # noqa: F811
    """What a short run did: its final parameters, its log and its rank trajectory, hashed."""
    t = make_trainer(method, args, base, cache, **train)
    t.fit()
    h = hashlib.sha256()
    for k, v in sorted(t.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([{k: v for k, v in r.items() if k != "wall_seconds"} for r in t.log], sort_keys=True).encode())
    h.update(json.dumps(t.method.trajectory, sort_keys=True, default=str).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def baselines(base, cache):  # noqa: F811
    return {}


@pytest.mark.parametrize("method,key", method_keys())
def test_every_method_key_changes_the_run_or_is_refused(method, key, base, cache, baselines):  # noqa: F811
    if method not in baselines:
        baselines[method] = fingerprint(method, MINIMAL[method], base, cache)
        # the control: the same configuration twice is the same run, so a difference below is the key's doing
        assert fingerprint(method, MINIMAL[method], base, cache) == baselines[method]
    args = {**MINIMAL[method], key: VARIANTS[key]}
    try:
        changed = fingerprint(method, args, base, cache)
    except ValueError as err:          # refused before any work, with the key named
        assert key in str(err)
        return
    assert changed != baselines[method], f"{method}: {key}={VARIANTS[key]!r} changed nothing"


@pytest.mark.parametrize("key,value", [("optimizer_state_after_cut", "reset"), ("optimizer_state_after_cut", "slice"),
                                       ("second_moment_after_cut", "slice"), ("lr_schedule", "cosine")])
def test_optimizer_keys_change_an_iterative_run(key, value, base, cache, baselines):  # noqa: F811
    if "ieht" not in baselines:
        baselines["ieht"] = fingerprint("ieht", MINIMAL["ieht"], base, cache)
    assert fingerprint("ieht", MINIMAL["ieht"], base, cache, **{key: value}) != baselines["ieht"]


@pytest.mark.parametrize("name,cfg,match", [
    ("svd", {"rank": 2, "targets": "vit_all"}, r"unknown config keys \['targets'\]"),
    ("trp", {"fisher_samples": 8}, r"method 'trp' does not use keys \['fisher_samples'\]"),
    ("ttm", {"tt_rank": 2, "fwttm_sweeps": 3}, r"method 'ttm' does not use keys \['fwttm_sweeps'\]"),
    ("ieht", {"fisher_labels": "true"}, r"method 'ieht' does not use keys \['fisher_labels'\]"),
    ("trp", {"nuclear_norm_mode": "prox"}, "nuclear_norm_mode='prox'; allowed: gradient, step"),
])
def test_keys_a_method_does_not_use_are_refused(name, cfg, match):
    with pytest.raises(ValueError, match=match):
        build_method(name, cfg)


def test_bad_optimizer_policies_are_refused():
    from lowrank.train import validate_train_config
    with pytest.raises(ValueError, match=r"train.optimizer_state_after_cut='rotate'; allowed: 'reset', 'carry'"):
        validate_train_config({"optimizer_state_after_cut": "rotate"})
    with pytest.raises(ValueError, match=r"train.second_moment_after_cut='zero'"):
        validate_train_config({"second_moment_after_cut": "zero"})


def test_the_rank_floor_is_logged_as_a_fraction_of_target_parameters(base, cache):  # noqa: F811
    """``oialr_min_rank_percent`` compiled: Σ min(k(m+n), mn) + m over Σ mn + m, k = max(1, ⌈p·min(m, n)⌉)."""
    import math as _m
    t = make_trainer("ieht", {**MINIMAL["ieht"], "oialr_min_rank_percent": 0.1}, base, cache)
    shapes = [tuple(t.model.get_submodule(n).weight.shape) for n in t.target_names]
    ks = [max(1, _m.ceil(0.1 * min(s))) for s in shapes]
    want = sum(min(k * (o + i), o * i) + o for k, (o, i) in zip(ks, shapes)) / sum(o * i + o for o, i in shapes)
    assert t.floor_ratio == pytest.approx(want, rel=1e-12)
    assert make_trainer("svd", MINIMAL["svd"], base, cache).floor_ratio is None   # no floor of its own

    import pandas as pd
    from study.fig2 import floor_text
    runs = pd.DataFrame({"dataset": ["d", "d"], "method": ["ieht", "svd"],
                         "floor_compression_ratio_target": [0.0417, None]})
    assert "4.17% of target parameters (the budget is 1.68× the floor" in floor_text(runs, "d", 0.07)
    assert "unreachable" in floor_text(runs, "d", 0.04)
