"""Short runs of every kind of method reproduce, bit for bit, the runs recorded before the loop was given a named
type and one-shot compression one path (``tests/reference_runs.json``): a refactor of the library's structure
changes no arithmetic. The numbers are those of the platform that recorded them (float kernels differ across
torch builds and CPU instruction sets); elsewhere the test is skipped and says why."""
from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import pytest
import torch

from lowrank.experiment import run_experiment

REFERENCE = json.loads((Path(__file__).parent / "reference_runs.json").read_text())

#: name → (method, method_args); every run: digits, 128 training samples, 2 epochs of 4 steps, one thread
RUNS = {
    "dense": ("dense", {}),
    "svd": ("svd", {"rank": 4}),
    "fwsvd": ("fwsvd", {"params_fraction": 0.5, "rank_rule": "energy"}),
    "asvd": ("asvd", {"rank": 4}),
    "asvd_energy": ("asvd", {"params_fraction": 0.4, "rank_rule": "energy"}),
    "tfwsvd": ("tfwsvd", {"rank": 6}),
    "svd_uniform_core": ("svd", {"params_fraction": 0.4, "train": "core"}),
    "ttm": ("ttm", {"tt_rank": 4}),
    "fwttm": ("fwttm", {"tt_rank": 4, "fwttm_sweeps": 2}),
    "ieht": ("ieht", {"oialr_threshold": 0.9, "delay": 0, "oialr_type": "step", "oialr_frequency": 1}),
    "ifht": ("ifht", {"oialr_threshold": 0.9, "delay": 1, "oialr_type": "step", "oialr_frequency": 2,
                      "fisher_samples": 32}),
    "oialr": ("oialr", {"oialr_threshold": 0.3, "delay": 0, "oialr_type": "epoch"}),
    "global_ieht": ("global_ieht", {"oialr_threshold": 0.9, "delay": 1, "oialr_type": "step", "oialr_frequency": 3}),
    "ieht_reset": ("ieht", {"oialr_threshold": 0.9, "delay": 0, "oialr_type": "step"}),
    "trp": ("trp", {"trp_frequency": 1, "trp_threshold": 0.9}),
    "fwtrp": ("fwtrp", {"trp_frequency": 2, "trp_threshold": 0.9, "fisher_samples": 32}),
}


def _platform() -> dict[str, str]:
    return {"torch": torch.__version__, "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()   # the runs set one intra-op thread (train.threads)
    yield
    torch.set_num_threads(threads)


def test_every_reference_run_is_listed():
    assert set(RUNS) == set(REFERENCE["runs"])


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_run_is_bit_identical_to_its_reference(name, tmp_path, keep_threads):
    if _platform() != REFERENCE["recorded_on"]:
        pytest.skip(f"reference recorded on {REFERENCE['recorded_on']}, this is {_platform()}")
    method, args = RUNS[name]
    train = {"epochs": 2, "batch_size": 32, "threads": 1, "lr": 3e-3}
    if name == "ieht_reset":
        train["optimizer_state_after_cut"] = "reset"
    run_experiment({"dataset": "digits", "model": "vit_digits", "method": method, "method_args": args,
                    "calibration_samples": 64, "train_samples": 128, "train": train}, tmp_path, progress=False)
    state = torch.load(tmp_path / "model.pt", weights_only=True)["model"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].cpu().numpy().tobytes())
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    trajectory = json.loads((tmp_path / "ranks.json").read_text())["trajectory"]
    ref = REFERENCE["runs"][name]
    assert [[t["event"], t["step"], t["ranks"]] for t in trajectory] == ref["trajectory"]
    assert [r["eval_loss"] for r in log] == ref["eval_loss"]
    assert [r["accuracy"] for r in log] == ref["accuracy"]
    assert digest.hexdigest() == ref["model_sha256"]
