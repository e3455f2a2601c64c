"""The training loop end to end: rank trajectories, optimizer policy, compile, resume after SIGKILL, DDP."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lowrank.data import get_dataset
from lowrank.experiment import load_base, run_experiment, validate_spec
from lowrank.layers import FactorizedLinear, LowRankLinear
from lowrank.linalg import min_rank_from_percent
from lowrank.methods import build_method
from lowrank.models import build_model, classifier_logits
from lowrank.train import Trainer

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def base(tmp_path_factory, cache):
    """A briefly pre-trained tiny digits ViT shared by the tests below."""
    out = tmp_path_factory.mktemp("pretrain")
    run_experiment({"dataset": "digits", "model": "vit_digits", "model_args": TINY, "method": "dense",
                    "train": {"epochs": 3, "lr": 3e-3, "batch_size": 32, "warmup_steps": 20}}, out, cache_dir=cache,
                   progress=False)
    return out / "model.pt"


def spec(method, args, base, epochs=3, **train):
    return {"dataset": "digits", "model": "vit_digits", "model_args": TINY, "base": str(base), "method": method,
            "method_args": args, "calibration_samples": 64,
            "train": {"epochs": epochs, "lr": 1e-3, "batch_size": 64, **train}}


@pytest.mark.parametrize("method,args", [
    ("ieht", {"oialr_threshold": 0.9, "oialr_frequency": 5, "oialr_type": "step", "delay": 2}),
    ("oialr", {"oialr_threshold": 0.2, "oialr_frequency": 1, "delay": 0}),
    ("ifht", {"oialr_threshold": 0.9, "oialr_frequency": 8, "oialr_type": "step", "delay": 0}),
    ("global_ieht", {"oialr_threshold": 0.9, "oialr_frequency": 1, "delay": 1}),
])
def test_rank_trajectories_never_increase_nor_fall_below_minimum(method, args, base, cache, tmp_path):
    final = run_experiment(spec(method, args, base), tmp_path, cache_dir=cache, progress=False)
    traj = json.loads((tmp_path / "ranks.json").read_text())["trajectory"]
    cuts = [t for t in traj if t["event"] == "cut"]
    assert cuts, "the run made no cut"
    model = build_model("vit_digits", num_classes=10, **TINY)
    for name in cuts[0]["ranks"]:
        shape = tuple(model.get_submodule(name).weight.shape)
        floor = min_rank_from_percent(shape, 0.02)
        seq = [t["ranks"][name] for t in traj]
        assert all(a >= b for a, b in zip(seq, seq[1:])), (name, seq)
        assert min(seq) >= floor
    # logs: one line per evaluation, parameter counts consistent with the final ranks
    log = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log] == ["start"] + ["epoch"] * 3 + ["final"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == final["accuracy"] and 0 < metrics["compression_ratio_target"] <= 1.5
    # the saved compiled model reproduces the final accuracy
    reloaded = build_model("vit_digits", num_classes=10, **TINY)
    load_base(reloaded, tmp_path / "model.pt")
    assert all(not isinstance(m, LowRankLinear) for m in reloaded.modules())
    test = get_dataset("digits", "test", cache_dir=cache)
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([int(test[i][1]) for i in range(len(test))])
    with torch.no_grad():
        acc = (classifier_logits(reloaded.eval(), x).argmax(-1) == y).float().mean().item()
    assert acc == pytest.approx(final["accuracy"], abs=1e-6)


def _trainer(method, args, base, cache, out=None, **train):
    s = validate_spec(spec(method, args, base, **train))
    model = build_model("vit_digits", num_classes=10, **TINY)
    load_base(model, base)
    tr = get_dataset("digits", "train", cache_dir=cache)
    te = get_dataset("digits", "test", cache_dir=cache)
    from lowrank.data import calibration_subset
    return Trainer(model, build_method(method, args), tr, te, s["train"], targets="blocks.*",
                   calib_set=calibration_subset(tr, 64), out_dir=out, progress=False)


def test_compiled_model_reproduces_training_form(base, cache):
    t = _trainer("ieht", {"oialr_threshold": 0.9, "oialr_frequency": 3, "oialr_type": "step", "delay": 0}, base,
                 cache, epochs=1)
    seen = {}
    finalize = t.method.finalize

    def spy(trainer):
        x = torch.stack([trainer.eval_set[i][0] for i in range(64)])
        trainer.model.eval()
        with torch.no_grad():
            seen["before"] = classifier_logits(trainer.model, x)
            assert any(isinstance(m, LowRankLinear) for m in trainer.model.modules())
            finalize(trainer)
            assert all(not isinstance(m, LowRankLinear) for m in trainer.model.modules())
            assert any(isinstance(m, FactorizedLinear) for m in trainer.model.modules())
            seen["after"] = classifier_logits(trainer.model, x)

    t.method.finalize = spy
    t.fit()
    torch.testing.assert_close(seen["after"], seen["before"], rtol=1e-4, atol=1e-5)


class _FreshOptimizer(Trainer):
    """The optimizer policy written as a fresh AdamW after every change (what the loop did before it shared the
    in-place edit with users' loops): surviving parameters keep their state object, a rotated core gets its
    transported state, everything else starts empty; groups from ``_param_groups`` (the model's order)."""

    def rebuild_optimizer(self) -> None:
        from lowrank.optim_state import transport_adam_state

        old = self.optimizer.state
        rotations, self.compressor._rotations = self.compressor._rotations, {}
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=self.lr_at(self.step))
        policy = self.cfg["optimizer_state_after_cut"]
        for g in self.optimizer.param_groups:
            for p in g["params"]:
                if p in old:
                    self.optimizer.state[p] = old[p]
                elif policy != "reset" and id(p) in rotations and old.get(rotations[id(p)][0]):
                    prev, Ua, Va = rotations[id(p)]
                    self.optimizer.state[p] = transport_adam_state(
                        old[prev], Ua, Va, policy=policy, like=p, second_moment=self.cfg["second_moment_after_cut"])
        self.compressor.watch(self.optimizer)


@pytest.mark.parametrize("method,args,policy", [
    ("ieht", {"oialr_threshold": 0.8, "oialr_frequency": 3, "oialr_type": "step", "delay": 2}, "carry"),
    ("ieht", {"oialr_threshold": 0.8, "oialr_frequency": 1, "delay": 1}, "reset"),
    ("oialr", {"oialr_threshold": 0.3, "oialr_frequency": 1, "delay": 0}, "slice"),
    ("ifht", {"oialr_threshold": 0.9, "oialr_frequency": 4, "oialr_type": "step", "delay": 0}, "carry"),
])
def test_in_place_optimizer_edit_is_bit_identical_to_a_fresh_optimizer(method, args, policy, base, cache):
    """The loop edits its optimizer in place after a cut (one implementation with users' loops); with gradient
    clipping on (its total norm sums over the parameters in group order) the run is bit-identical to one that
    builds a fresh AdamW after every change: the same weights, the same logged accuracies."""
    runs = {}
    for cls in (Trainer, _FreshOptimizer):
        t = _trainer(method, args, base, cache, epochs=3, grad_clip=1.0, optimizer_state_after_cut=policy)
        t.__class__ = cls
        t.fit()
        runs[cls] = t
    a, b = runs[Trainer], runs[_FreshOptimizer]
    assert "cut" in [r["event"] for r in a.method.trajectory]
    assert [(r["accuracy"], r["eval_loss"]) for r in a.log] == [(r["accuracy"], r["eval_loss"]) for r in b.log]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("policy", ["reset", "carry", "slice"])
def test_optimizer_policy_after_a_cut(policy, base, cache):
    """A replaced S core starts from an empty Adam state (``reset``) or from the old state transported into
    the new basis (``carry``: m' = Uaᵀ m Va, step kept; ``slice``: OIALR's leading block); surviving
    parameters keep theirs under every policy."""
    t = _trainer("ieht", {"oialr_threshold": 0.8, "oialr_frequency": 1, "delay": 0}, base, cache, epochs=2,
                 optimizer_state_after_cut=policy)
    t.method.setup(t)
    t.build_optimizer()
    for batch in list(t.train_loader(0))[:3]:
        t.optimizer.zero_grad()
        torch.nn.functional.cross_entropy(classifier_logits(t.model, batch), batch[1]).backward()
        t.optimizer.step()
    layer = t.model.get_submodule("blocks.0.mlp.fc1")
    old_S, bias, U0, V0 = layer.S, layer.bias, layer.U.detach().double(), layer.V.detach().double()
    bias_state, old_state = t.optimizer.state[bias], dict(t.optimizer.state[old_S])
    assert t.optimizer.state[old_S]["step"] == 3
    t.compressor.note(t.method.cut(t))               # the cut returns its rotations; the driver keeps them
    t.rebuild_optimizer()
    assert layer.S is not old_S and layer.rank < old_S.shape[0]
    k = layer.rank
    if policy == "reset":
        assert layer.S not in t.optimizer.state          # fresh: moments and step reset
    else:
        new = t.optimizer.state[layer.S]
        assert new["step"] == 3                          # bias correction continues
        assert new["exp_avg"].shape == new["exp_avg_sq"].shape == (k, k)
        if policy == "carry":
            # the bases are U Ua, V Va: recover Ua, Va from the stored float32 bases (rounding ~ k·eps32)
            Ua, Va = U0.T @ layer.U.detach().double(), V0.T @ layer.V.detach().double()
            want = Ua.T @ old_state["exp_avg"].double() @ Va
            tol = 64 * old_S.shape[0] * torch.finfo(torch.float32).eps * float(old_state["exp_avg"].abs().max())
            torch.testing.assert_close(new["exp_avg"].double(), want, rtol=0, atol=tol)
            assert (new["exp_avg_sq"] >= 0).all()
        else:
            torch.testing.assert_close(new["exp_avg"], old_state["exp_avg"][:k, :k], rtol=0, atol=0)
    assert t.optimizer.state[bias] is bias_state      # kept
    in_opt = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in t.model.parameters() if p.requires_grad}
    assert id(layer.U) not in in_opt and id(layer.V) not in in_opt
    # weight decay only on ≥2-D trainable tensors
    assert all(p.ndim >= 2 for p in t.optimizer.param_groups[0]["params"])
    assert all(p.ndim < 2 for p in t.optimizer.param_groups[1]["params"])
    # and the optimizer steps with the installed state
    t.optimizer.zero_grad()
    batch = next(iter(t.train_loader(1)))
    torch.nn.functional.cross_entropy(classifier_logits(t.model, batch), batch[1]).backward()
    t.optimizer.step()
    assert torch.isfinite(layer.S).all()


def test_one_shot_trains_the_declared_factors(base, cache):
    t = _trainer("svd", {"rank": 4}, base, cache, epochs=1)
    t.method.setup(t)
    layer = t.model.get_submodule("blocks.1.mlp.fc2")
    assert isinstance(layer, FactorizedLinear) and layer.rank == 4
    assert layer.up.weight.requires_grad and layer.down.weight.requires_grad
    t2 = _trainer("svd", {"rank": 4, "train": "core"}, base, cache, epochs=1)
    t2.method.setup(t2)
    layer = t2.model.get_submodule("blocks.1.mlp.fc2")
    assert isinstance(layer, LowRankLinear) and not layer.U.requires_grad and layer.S.requires_grad


@pytest.mark.parametrize("rule", ["uniform", "energy"])
def test_one_shot_at_a_params_fraction_meets_it_as_compress_does(rule, base, cache):
    """``params_fraction``: the per-layer ranks are those of lowrank.compress (the public API) on the same
    base, the compressed targets keep at most that fraction, and the uniform rule's rank of each layer is the
    largest k with k(m + n) + bias ≤ f(mn + bias) (brute force)."""
    import copy

    from lowrank import compress
    from lowrank.surgery import count_parameters, find_linear_layers

    f = 0.3
    t = _trainer("svd", {"params_fraction": f, "rank_rule": rule}, base, cache, epochs=1)
    dense = copy.deepcopy(t.model)
    layers = find_linear_layers(dense, "blocks.*")
    t.method.setup(t)
    got = t.module_ranks()
    _, ref = compress(copy.deepcopy(dense), method="svd", params_fraction=f, rank_rule=rule, targets="blocks.*")
    assert got == ref.ranks
    after = count_parameters(t.model, list(layers), original=count_parameters(dense, list(layers)))
    assert after.ratio_target <= f
    if rule == "uniform":
        for name, layer in layers.items():
            m, n = layer.weight.shape
            b = layer.bias.numel()
            assert got[name] == max(k for k in range(1, min(m, n) + 1) if k * (m + n) + b <= f * (m * n + b))


@pytest.mark.parametrize("args,match", [
    ({"rank": 4, "params_fraction": 0.3}, "exactly one of rank and params_fraction"),
    ({}, "exactly one of rank and params_fraction"),
    ({"params_fraction": 1.0}, "keeps the dense model"),
    ({"params_fraction": 0.0}, "params_fraction=0.0 is outside"),
    ({"rank": 4, "rank_rule": "energy"}, "applies to params_fraction only"),
    ({"params_fraction": 0.3, "rank_rule": "greedy"}, "rank_rule='greedy'; allowed: uniform, energy"),
])
def test_one_shot_size_keys_are_refused_when_wrong(args, match):
    with pytest.raises(ValueError, match=match):
        build_method("svd", args)


def test_a_run_group_validates_every_run_first_then_runs_each_into_its_folder(base, cache, tmp_path):
    from lowrank.experiment import run_group

    good = spec("svd", {"rank": 2}, base, epochs=1)
    with pytest.raises(ValueError, match=r"run 'b': .*rank=0 must be a positive int"):
        run_group({"a": good, "b": spec("svd", {"rank": 0}, base, epochs=1)}, tmp_path / "bad", cache_dir=cache,
                  progress=False)
    assert not (tmp_path / "bad").exists()        # nothing ran: the bad spec was found first
    finals = run_group({"a": good, "b": spec("svd", {"rank": 3}, base, epochs=1)}, tmp_path / "g", cache_dir=cache,
                       progress=False)
    assert list(finals) == ["a", "b"]
    for name, rank in (("a", 2), ("b", 3)):
        metrics = json.loads((tmp_path / "g" / name / "metrics.json").read_text())
        assert metrics["spec"]["method_args"]["rank"] == rank
        assert metrics["accuracy"] == pytest.approx(finals[name]["accuracy"])


def test_trp_run_ends_compiled_at_the_truncated_rank(base, cache, tmp_path):
    final = run_experiment(spec("trp", {"trp_threshold": 0.8, "trp_frequency": 7, "nuclear_norm_weight": 1e-3}, base,
                                epochs=2), tmp_path, cache_dir=cache, progress=False)
    traj = json.loads((tmp_path / "ranks.json").read_text())["trajectory"]
    assert [t["event"] for t in traj][-1] == "compile"
    assert final["ranks"] == traj[-1]["ranks"]
    assert final["compression_ratio_target"] < 1


@pytest.mark.parametrize("patch,match", [
    ({"dataset": "cifar100"}, "dataset='cifar100' is not a known dataset"),
    ({"model": "resnet50"}, "model='resnet50' is not a known model"),
    ({"method": "svdd"}, "method='svdd' is not a known method"),
    ({"train": {"epochs": -1}}, r"train.epochs=-1 must be an int ≥ 0"),
    ({"train": {"lr": -1}}, r"train.lr=-1 must be a finite number > 0"),
    ({"method": "ieht", "method_args": {"oialr_threshold": 1.2}}, "oialr_threshold=1.2 is outside"),
    ({"method": "ieht", "method_args": {"oialr_frequency": 0}}, "oialr_frequency=0 must be a positive int"),
    ({"method": "ieht", "method_args": {"oialr_min_rank_percent": 1.5}}, "oialr_min_rank_percent=1.5 is outside"),
    ({"base": "no/such/model.pt"}, "base='no/such/model.pt' is not an existing model file"),
    ({"colour": "red"}, r"unknown keys \['colour'\]"),
])
def test_bad_experiment_specs_are_refused_before_any_work(patch, match, tmp_path):
    s = {"dataset": "digits", "model": "vit_digits", "method": "dense", **patch}
    with pytest.raises(ValueError, match=match):
        run_experiment(s, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_delay_beyond_the_run_is_refused(base, cache):
    with pytest.raises(ValueError, match=r"delay=5 is beyond the run \(3 epochs\)"):
        _trainer("ieht", {"delay": 5}, base, cache, epochs=3)


# ------------------------------------------------------------------------------------------ resume
def _cli(spec_path, out, cache):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return [sys.executable, "-m", "lowrank", "run", str(spec_path), "--out", str(out), "--cache-dir", str(cache),
            "--quiet"], env


def test_resume_after_sigkill_matches_uninterrupted_run(base, cache, tmp_path):
    s = spec("ieht", {"oialr_threshold": 0.9, "oialr_frequency": 4, "oialr_type": "step", "delay": 3}, base,
             epochs=3, checkpoint_every_steps=3)
    s["keep_checkpoint"] = True
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(s))
    cmd, env = _cli(p, tmp_path / "straight", cache)
    subprocess.run(cmd, env=env, check=True, cwd=REPO, capture_output=True)
    cmd, env = _cli(p, tmp_path / "killed", cache)
    kills = 0
    for wait_for in (1, 3):  # kill twice, at different points of the run
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ck = tmp_path / "killed" / "checkpoint.pt"
        t0 = time.time()
        while time.time() - t0 < 120:
            if ck.exists() and torch.load(ck, weights_only=True)["step"] >= wait_for * 7:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    subprocess.run(cmd, env=env, check=True, cwd=REPO, capture_output=True)
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert b["accuracy"] == pytest.approx(a["accuracy"], abs=1e-6)
    assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=1e-6)
    la = (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    lb = (tmp_path / "killed" / "log.jsonl").read_text().splitlines()
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = json.loads(x), json.loads(y)
        assert x["ranks"] == y["ranks"] and x["step"] == y["step"]
        assert y["accuracy"] == pytest.approx(x["accuracy"], abs=1e-6)


# ------------------------------------------------------------------------------------------ DDP
def test_ddp_ranks_agree_and_match_single_process(base, cache, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(worker), str(base), str(cache), str(out)],
                   env=env, check=True, cwd=REPO, capture_output=True, timeout=300)
    subprocess.run([sys.executable, str(worker), str(base), str(cache), str(tmp_path / "single")],
                   env=env, check=True, cwd=REPO, capture_output=True, timeout=300)
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    single = json.loads((tmp_path / "single" / "rank0.json").read_text())
    assert r0["cuts"] and r0["cuts"] == r1["cuts"]          # bit-for-bit identical factors after every cut
    # same global batches: the same cut schedule; the first cut (a few steps in) is identical, later ones
    # may differ by rounding (all-reduce sums in another order), so compare spectra with a tolerance
    assert [c["step"] for c in r0["cuts"]] == [c["step"] for c in single["cuts"]]
    assert r0["cuts"][0]["ranks"] == single["cuts"][0]["ranks"]
    torch.testing.assert_close(torch.tensor(r0["cuts"][0]["spectrum"]), torch.tensor(single["cuts"][0]["spectrum"]),
                               rtol=1e-4, atol=1e-5)
    assert r0["final_params_checksum"] == r1["final_params_checksum"]
    assert r0["accuracy"] == pytest.approx(single["accuracy"], abs=0.02)
    assert r0["eval_loss"] == pytest.approx(single["eval_loss"], rel=0.02)


@pytest.mark.parametrize("method,args,fresh", [
    ("dense", {}, False),                                  # finalize does nothing: the last epoch's evaluation
    ("svd", {"rank": 4}, False),                           # factors are already the compiled form
    ("ieht", {"oialr_threshold": 0.9, "oialr_frequency": 1, "delay": 0}, True),   # compiles U S Vᵀ → A·B
])
def test_final_evaluation_is_repeated_only_when_finalize_changed_the_model(method, args, fresh, base, cache,
                                                                          tmp_path, monkeypatch):
    calls = []
    original = Trainer.evaluate

    def counting(self, *a, **k):
        calls.append(self.step)
        return original(self, *a, **k)

    monkeypatch.setattr(Trainer, "evaluate", counting)
    final = run_experiment(spec(method, args, base, epochs=2), tmp_path, cache_dir=cache, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log] == ["start", "epoch", "epoch", "final"]
    assert len(calls) == (4 if fresh else 3)
    if not fresh:
        assert {k: v for k, v in log[-1].items() if k not in ("kind", "wall_seconds")} == \
            {k: v for k, v in log[-2].items() if k != "kind"}
    # either way the final numbers are those of the saved model
    reloaded = build_model("vit_digits", num_classes=10, **TINY)
    load_base(reloaded, tmp_path / "model.pt")
    test = get_dataset("digits", "test", cache_dir=cache)
    with torch.no_grad():
        acc = (classifier_logits(reloaded.eval(), (test.x, test.y)).argmax(-1) == test.y).double().mean().item()
    assert acc == pytest.approx(final["accuracy"], abs=1e-6)


def test_a_validation_split_is_evaluated_without_changing_training_and_runs_record_their_base(base, cache, tmp_path):
    """Every record carries the validation accuracy; evaluating it touches no generator, so the training (its
    losses and test accuracies) is bit-identical to the same run without a validation split; a safetensors base
    loads to the same model as its model.pt, and each run records the content hash of the file it started from."""
    from safetensors.torch import save_file

    from lowrank.utils import file_sha256

    args = {"oialr_threshold": 0.9, "oialr_frequency": 5, "oialr_type": "step", "delay": 2}
    val = {**spec("ieht", args, base), "dataset_args": {"validation_fraction": 0.15}}
    run_experiment(val, tmp_path / "val", cache_dir=cache, progress=False)
    log = [json.loads(x) for x in (tmp_path / "val" / "log.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in log)
    n_val = len(get_dataset("digits", "validation", validation_fraction=0.15))
    assert all(abs(r["val_accuracy"] * n_val - round(r["val_accuracy"] * n_val)) < 1e-9 for r in log)  # k / n_val

    # the same run with its validation split evaluated by hand afterwards instead: identical training
    tr = get_dataset("digits", "train", validation_fraction=0.15)
    te = get_dataset("digits", "test")
    runs = {}
    for name, v in (("with", get_dataset("digits", "validation", validation_fraction=0.15)), ("without", None)):
        s = validate_spec(val)
        model = build_model("vit_digits", num_classes=10, **TINY)
        load_base(model, base)
        t = Trainer(model, build_method("ieht", args), tr, te, s["train"], targets="blocks.*",
                    calib_set=tr, progress=False, val_set=v)
        t.fit()
        runs[name] = [(r["train_loss"], r["accuracy"], r["compression_ratio_target"]) for r in t.log]
    assert runs["with"] == runs["without"]

    st = tmp_path / "base.safetensors"
    save_file(torch.load(base, weights_only=True)["model"], str(st))
    a, b = build_model("vit_digits", num_classes=10, **TINY), build_model("vit_digits", num_classes=10, **TINY)
    load_base(a, base)
    load_base(b, st)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    run_experiment({**spec("svd", {"rank": 4}, st, epochs=1)}, tmp_path / "st", cache_dir=cache, progress=False)
    metrics = json.loads((tmp_path / "st" / "metrics.json").read_text())
    import hashlib

    assert metrics["base_sha256"] == hashlib.sha256(st.read_bytes()).hexdigest() == file_sha256(st)
