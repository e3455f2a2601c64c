"""Run integrity: a run folder belongs to one spec and one process, an interrupted run (or pipeline) resumes
bit for bit, a diverged run fails, YAML is read as DVC reads it, user errors are one line, malformed
compressed folders are refused before anything is allocated, outputs are durable and reproducible."""
from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import stat
import time
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML

import lowrank.utils as utils
from lowrank import cli, compress, load_compressed, save_compressed
from lowrank.config import load_params, load_spec, read_yaml
from lowrank.experiment import RUN_CACHE_ENV, run_experiment, run_group
from lowrank.serialization import STRUCTURE_FILE, WEIGHTS_FILE
from lowrank.train import Trainer

from . import models_small as ms

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def tiny(**train) -> dict:
    """A dense digits run of 3 steps per epoch: seconds, with a checkpoint after every step."""
    return {"dataset": "digits", "model": "vit_digits", "model_args": TINY, "method": "dense",
            "calibration_samples": 32, "train_samples": 96,
            "train": {"epochs": 2, "batch_size": 32, "lr": 1e-3, "checkpoint_every_steps": 1, **train}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


class Interrupt(Exception):
    """Stands for a SIGKILL right after a checkpoint (the SIGKILL itself: tests/test_train.py)."""


def _interrupt_at(monkeypatch, step: int, lr: float | None = None) -> None:
    """Interrupt the run (of learning rate ``lr``, default any) right after its checkpoint at ``step``."""
    original = Trainer.save_checkpoint

    def save_then_die(self):
        original(self)
        if self.step == step and lr in (None, self.cfg["lr"]):
            raise Interrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ 1. a resume checks the spec
def test_a_checkpoint_of_another_spec_is_refused(cache, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(Interrupt):
        run_experiment(tiny(), out, cache_dir=cache, progress=False)
    monkeypatch.undo()
    assert (out / "checkpoint.pt").is_file()
    with pytest.raises(ValueError, match=r"checkpoint.pt was made by run .*delete it"):
        run_experiment(tiny(lr=3e-3, random_state=1), out, cache_dir=cache, progress=False)
    assert not (out / "metrics.json").exists()


# ------------------------------------------------------------------------------ 2. one process per folder
def test_a_second_process_on_a_locked_folder_is_refused_at_once(cache, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)   # what another process writing the folder holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match="another process is writing this run folder"):
            run_experiment(tiny(), out, cache_dir=tmp_path / "data", progress=False)
        assert time.perf_counter() - t0 < 5 and not (tmp_path / "data").exists()   # before any data load
    finally:
        os.close(fd)


def test_a_finished_run_is_not_redone(cache, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = run_experiment(tiny(), out, cache_dir=cache, progress=False)
    before = (out / "metrics.json").read_bytes()

    def refuse(self):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(Trainer, "fit", refuse)
    again = run_experiment(tiny(), out, cache_dir=cache, progress=False)
    assert again["accuracy"] == first["accuracy"] and (out / "metrics.json").read_bytes() == before


# ------------------------------------------------------------------------------ 3. a killed pipeline resumes
def test_a_run_group_whose_folder_was_deleted_resumes_from_the_run_cache(cache, tmp_path, monkeypatch):
    """What a killed `make repro` meets: DVC deletes the stage's outputs before it re-runs the stage."""
    group = {"a": tiny(), "b": tiny(lr=2e-3)}
    run_group(group, tmp_path / "straight", cache_dir=cache, progress=False)
    monkeypatch.setenv(RUN_CACHE_ENV, str(tmp_path / "runcache"))
    _interrupt_at(monkeypatch, 4, lr=2e-3)     # run a finishes (6 steps), run b stops mid-epoch 2
    with pytest.raises(Interrupt):
        run_group(group, tmp_path / "killed", cache_dir=cache, progress=False)
    shutil.rmtree(tmp_path / "killed")
    monkeypatch.undo()
    monkeypatch.setenv(RUN_CACHE_ENV, str(tmp_path / "runcache"))
    fits = []
    original_fit = Trainer.fit

    def counting_fit(self):
        fits.append(self)
        return original_fit(self)

    monkeypatch.setattr(Trainer, "fit", counting_fit)
    run_group(group, tmp_path / "killed", cache_dir=cache, progress=False)
    assert len(fits) == 1 and fits[0].cfg["lr"] == 2e-3 and fits[0].step == 6   # a restored, b resumed
    for name in group:
        a, b = _records(tmp_path / "straight" / name), _records(tmp_path / "killed" / name)
        assert [{k: v for k, v in r.items() if k != "wall_seconds"} for r in a] == \
               [{k: v for k, v in r.items() if k != "wall_seconds"} for r in b]   # bit for bit, train loss included
        ma = json.loads((tmp_path / "straight" / name / "metrics.json").read_text())
        mb = json.loads((tmp_path / "killed" / name / "metrics.json").read_text())
        assert {k: v for k, v in ma.items() if k != "wall_seconds"} == \
               {k: v for k, v in mb.items() if k != "wall_seconds"}
    assert sorted(p.name for p in (tmp_path / "killed" / "b").iterdir()) == \
        ["log.jsonl", "metrics.json", "model.pt", "ranks.json"]


# ------------------------------------------------------------------------------ 4. a diverged run fails
def test_a_diverged_run_stops_with_a_clear_error(cache, tmp_path):
    # lr 1e30: the first AdamW step moves every weight by about 1e30, so the next logits overflow
    with pytest.raises(FloatingPointError, match=r"the (training|evaluation) loss is (nan|inf).*diverged"):
        run_experiment(tiny(lr=1e30), tmp_path / "run", cache_dir=cache, progress=False)
    assert not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(ValueError, match=r"train.lr=inf must be a finite number > 0"):
        run_experiment(tiny(lr=math.inf), tmp_path / "run2", cache_dir=cache, progress=False)


def test_json_outputs_are_strict(tmp_path):
    with pytest.raises(ValueError):
        utils.atomic_write_json(tmp_path / "x.json", {"eval_loss": float("nan")})
    assert not (tmp_path / "x.json").exists()


# ------------------------------------------------------------------------------ 5. YAML as DVC reads it
@pytest.mark.parametrize("text,match", [
    ("train: {lr: 0.1}\ntrain: {lr: 0.2}\n", r":2: found duplicate key \"train\""),
    ("a:\n  delay: 010\n", r":2: '010' reads as 10 under YAML 1.2 .* but 8 under YAML 1.1"),
    ("a:\n  shuffle: yes\n", r":2: 'yes' reads as 'yes' under YAML 1.2 .* but True under YAML 1.1"),
    ("a: [1, 2\n", r"not valid YAML"),
])
def test_ambiguous_or_duplicate_yaml_is_refused_with_its_line(text, match, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_spec(str(path))


def test_yaml_reads_as_dvc_reads_it(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("train: {lr: 1e-3, epochs: 10}\n")
    assert read_yaml(path) == {"train": {"lr": 0.001, "epochs": 10}}
    # the project's params.yaml: the same values as DVC's loader (ruamel.yaml, safe, YAML 1.2)
    repo = Path(__file__).resolve().parents[1]
    assert load_params(repo / "params.yaml") == YAML(typ="safe").load((repo / "params.yaml").read_text())


# ------------------------------------------------------------------------------ 6. one line per user error
@pytest.mark.parametrize("argv,text", [
    (["run", "no-such-spec.yaml", "--out", "OUT"], "neither an existing YAML/JSON file"),
    (["run", "SPEC:{train: {epochs: -3}}", "--out", "OUT"], "train.epochs=-3 must be an int ≥ 0"),
    (["run", "SPEC:{colour: red}", "--out", "OUT"], "unknown keys ['colour']"),
    (["run", "SPEC:{dataset_args: {sizee: 3}}", "--out", "OUT"], "dataset_args: unknown keys ['sizee']"),
    (["run", "SPEC:{train: [1", "--out", "OUT"], "not valid YAML"),
    (["compress", "--model", "x", "--method", "svd", "--params-fraction", "1.5", "--out", "OUT"], "params_fraction"),
])
def test_cli_user_errors_are_one_line_and_exit_2(argv, text, tmp_path, capsys):
    args = []
    for a in argv:
        if a.startswith("SPEC:"):
            (tmp_path / "spec.yaml").write_text(a[5:] + "\n")
            a = str(tmp_path / "spec.yaml")
        args.append(a.replace("OUT", str(tmp_path / "out")))
    assert cli.main(args + ["--params", str(tmp_path / "none.yaml")] if args[0] == "run" else args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError):     # --debug: the exception itself, with its traceback
        cli.main(["--debug", *args])


def test_cuda_on_a_machine_without_it_is_refused_before_the_data(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"train.device='cuda', but this machine has no CUDA device"):
        run_experiment(tiny(device="cuda"), tmp_path / "out", cache_dir=tmp_path / "data")
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------------------ 7. load_compressed
def _saved(tmp_path):
    torch.manual_seed(0)
    model, _ = ms.vit()
    compress(model, method="svd", rank=2)
    save_compressed(model, tmp_path)
    return json.loads((tmp_path / STRUCTURE_FILE).read_text())


def _edit(tmp_path, doc):
    (tmp_path / STRUCTURE_FILE).write_text(doc if isinstance(doc, str) else json.dumps(doc))


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["layers"]["blocks.0.mlp.fc1"].pop("rank"), r"blocks.0.mlp.fc1: factorized layer without \['rank'\]"),
    (lambda d: d.update(layers=[1, 2]), "'layers' must be a non-empty mapping"),
    (lambda d: d["layers"].update({"blocks.0.mlp.fc1": [1]}), "entry in structure.json must be a mapping"),
    (lambda d: d["layers"]["blocks.0.mlp.fc1"].update(rank="2"), r"rank='2' must be an int"),
    ("[" * 100_000 + "]" * 100_000, "not a JSON structure file"),
    ('{"format": ', "not a JSON structure file"),
])
def test_malformed_structures_raise_value_error(edit, match, tmp_path):
    doc = _saved(tmp_path)
    if callable(edit):
        edit(doc)
    _edit(tmp_path, edit if isinstance(edit, str) else doc)
    base, _ = ms.vit()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        load_compressed(base, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_huge_tensor_train_ranks_are_refused_before_any_allocation(tmp_path, monkeypatch):
    doc = _saved(tmp_path)
    doc["layers"]["blocks.0.mlp.fc1"] = {"type": "tt", "in_features": 32, "out_features": 64, "bias": True,
                                         "out_modes": [8, 8], "in_modes": [4, 8], "ranks": [3000]}
    _edit(tmp_path, doc)

    def allocate(*a, **k):
        raise AssertionError("a layer was allocated from an unchecked structure")

    monkeypatch.setattr("lowrank.serialization.TTLinear", allocate)
    with pytest.raises(ValueError, match=r"TT bond rank 1 = 3000 exceeds 32"):
        load_compressed(ms.vit()[0], tmp_path)


def test_a_missing_tensor_is_found_before_the_base_model_changes(tmp_path):
    from safetensors.torch import load_file, save_file
    _saved(tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    del tensors["head.weight"]
    save_file(tensors, str(tmp_path / WEIGHTS_FILE), metadata={"format": "opfact-compressed/1"})
    base, _ = ms.vit()
    names = [n for n, _ in base.named_modules()]
    with pytest.raises(ValueError, match="head.weight"):
        load_compressed(base, tmp_path)
    assert [n for n, _ in base.named_modules()] == names   # no layer was replaced


# ------------------------------------------------------------------------------ 8. the smaller items
def test_a_corrupt_checkpoint_says_how_to_start_over(cache, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"checkpoint.pt is unreadable .*delete it to start this run over"):
        run_experiment(tiny(), out, cache_dir=cache, progress=False)


def test_atomic_writes_fsync_and_respect_the_umask(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    utils.atomic_save({"x": torch.zeros(2)}, tmp_path / "a.pt")
    assert synced, "atomic_save did not fsync"
    old = os.umask(0o022)
    try:
        utils.atomic_write_text(tmp_path / "b.txt", "x")
        utils.atomic_save({"x": 1}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o644


def test_an_out_below_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not writable"):
        run_experiment(tiny(), tmp_path / "file" / "run", cache_dir=tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_refused_before_training(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            run_experiment(tiny(), out, cache_dir=tmp_path / "data", progress=False)
        assert not (tmp_path / "data").exists()
    finally:
        out.chmod(0o755)


def test_metrics_json_is_written_last_and_wall_time_spans_segments(cache, tmp_path, monkeypatch):
    written = []
    for name in ("atomic_write_json", "atomic_write_text", "atomic_save"):
        real = getattr(utils, name)
        monkeypatch.setattr(f"lowrank.train.{name}",
                            lambda *a, _real=real, **k: (written.append(Path(str(a[1] if _real is utils.atomic_save
                                                                                  else a[0])).name), _real(*a, **k)))
    out = tmp_path / "run"
    original = Trainer.save_checkpoint
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(Interrupt):
        run_experiment(tiny(), out, cache_dir=cache, progress=False)
    spent = torch.load(out / "checkpoint.pt", weights_only=True)["wall_seconds"]
    monkeypatch.setattr(Trainer, "save_checkpoint", original)
    written.clear()
    run_experiment(tiny(), out, cache_dir=cache, progress=False)
    assert [w for w in written if not w.startswith("checkpoint")][-1] == "metrics.json"
    assert json.loads((out / "metrics.json").read_text())["wall_seconds"] > spent > 0


def test_theory_pdfs_are_byte_identical_across_runs(tmp_path):
    import matplotlib.pyplot as plt
    from theory.plots import save_figure

    pdfs = []
    for i in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        pdfs.append(save_figure(fig, tmp_path / str(i), "f")[1].read_bytes())
        time.sleep(1.1)    # the PDF CreationDate has one-second resolution
    assert pdfs[0] == pdfs[1]
