"""Worker for tests/test_train.py::test_ddp_ranks_agree_and_match_single_process.

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py BASE CACHE OUT   # DDP, gloo on CPU
    python tests/ddp_worker.py BASE CACHE OUT                                      # single process

Runs a short IEHT training (step-based cuts) and records, after every cut, the ranks and a SHA-256
of all parameters on this process, then the final accuracy: ``OUT/rank<r>.json``.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from lowrank.data import calibration_subset, get_dataset
from lowrank.experiment import load_base
from lowrank.methods import build_method
from lowrank.models import build_model
from lowrank.train import Trainer

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def checksum(model):
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(base, cache, out):
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    model = build_model("vit_digits", num_classes=10, **TINY)
    load_base(model, base)
    # 1280 = 20 global batches of 64: DDP drops an incomplete last global batch, so use none
    train = torch.utils.data.Subset(get_dataset("digits", "train", cache_dir=cache), range(1280))
    test = get_dataset("digits", "test", cache_dir=cache)
    method = build_method("ieht", {"oialr_threshold": 0.9, "oialr_frequency": 6, "oialr_type": "step", "delay": 2})
    trainer = Trainer(model, method, train, test, {"epochs": 2, "lr": 1e-3, "batch_size": 64, "random_state": 0},
                      targets="blocks.*", calib_set=calibration_subset(train, 64), progress=False)
    cuts = []
    cut = method.cut

    def recording_cut(t):
        change = cut(t)
        cuts.append({"step": t.step, "ranks": change.ranks, "checksum": checksum(t.model),
                     "spectrum": torch.linalg.svdvals(t.model.get_submodule("blocks.0.mlp.fc1").S.detach()).tolist()})
        return change

    method.cut = recording_cut
    final = trainer.fit()
    rank = dist.get_rank() if dist.is_initialized() else 0
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({
        "cuts": cuts, "accuracy": final["accuracy"], "eval_loss": final["eval_loss"],
        "final_params_checksum": checksum(trainer.model)}))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
