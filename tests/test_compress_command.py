"""``python -m lowrank compress``: a timm name with a safetensors state dict and a Hugging Face folder,
compressed, saved, reloaded, timed; bad arguments refused before the model is loaded."""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from lowrank import FactorizedLinear, load_compressed
from lowrank.cli import main

from . import models_small as ms

_VIT_ARGS = {"img_size": 8, "patch_size": 2, "in_chans": 1, "num_classes": 10, "embed_dim": 32, "depth": 2,
             "num_heads": 2}
EXACT = {"rtol": 0.0, "atol": 0.0}   # same tensors, same kernels, same inputs: bit-identical outputs


def _timm_model():
    import timm
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **_VIT_ARGS)


def test_timm_name_with_weights_on_digits(tmp_path, capsys):
    torch.manual_seed(0)
    base = _timm_model()
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    out = tmp_path / "out"
    assert main(["compress", "--model", "vit_tiny_patch16_224", "--model-args", json.dumps(_VIT_ARGS),
          "--weights", str(tmp_path / "vit.safetensors"), "--method", "fwsvd", "--params-fraction", "0.25",
          "--calibration", "digits", "--calibration-samples", "64", "--repeats", "3", "--out", str(out)]) == 0
    assert "fwsvd: 8 layers factorised" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    comp = report["compression"]
    assert comp["achieved_fraction"] <= 0.25 and comp["calibration"]["samples"] == 64
    assert report["source"] == {"kind": "timm", "name": "vit_tiny_patch16_224", "model_args": _VIT_ARGS,
                                "weights": str(tmp_path / "vit.safetensors")}
    speed = report["inference"]
    assert speed["dense_seconds"] > 0 and speed["compressed_seconds"] > 0
    assert speed["speedup"] == pytest.approx(speed["dense_seconds"] / speed["compressed_seconds"])
    torch.manual_seed(1)
    loaded = load_compressed(_timm_model(), out)
    # untouched layers come from the weights file, the targets are factorised
    stored = load_file(str(out / "model.safetensors"))
    torch.testing.assert_close(loaded.patch_embed.proj.weight, base.patch_embed.proj.weight, **EXACT)
    torch.testing.assert_close(stored["head.weight"], base.head.weight.detach(), **EXACT)
    assert isinstance(loaded.blocks[0].mlp.fc1, FactorizedLinear)
    assert sorted(comp["ranks"]) == sorted(f"blocks.{i}.{n}" for i in range(2)
                                           for n in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"))


def test_hf_folder_with_a_token_file(tmp_path):
    torch.manual_seed(0)
    model, names = ms.distilbert()
    model.save_pretrained(str(tmp_path / "hf"))
    batches = ms.token_batches(n_batches=2, batch=4)
    save_file({k: torch.cat([b[k] for b in batches]) for k in batches[0]}, str(tmp_path / "calib.safetensors"))
    out = tmp_path / "out"
    assert main(["compress", "--model", str(tmp_path / "hf"), "--method", "fwsvd", "--params-fraction", "0.5",
                 "--rank-rule", "energy", "--calibration", str(tmp_path / "calib.safetensors"), "--batch-size", "4",
                 "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["class"] == "DistilBertForSequenceClassification"
    assert sorted(report["compression"]["ranks"]) == sorted(names)
    assert report["compression"]["calibration"]["samples"] == 8
    from transformers import AutoModelForSequenceClassification
    loaded = load_compressed(AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "hf")), out)
    stored = load_file(str(out / "model.safetensors"))
    for k, v in loaded.state_dict().items():
        if k in stored:
            assert torch.equal(v, stored[k]), k


@pytest.mark.parametrize("argv, match", [
    (["--params-fraction", "1.5", "--method", "svd"], r"params_fraction=1.5 is outside the allowed range \(0, 1\]"),
    (["--params-fraction", "0.5", "--method", "nope"], r"method='nope' is not a known one-shot method"),
    (["--params-fraction", "0.5", "--method", "fwsvd"], r"method='fwsvd' measures statistics on calibration data"),
    (["--params-fraction", "0.5", "--method", "svd", "--model-args", "[1]"], r"--model-args .* must be a JSON object"),
])
def test_bad_arguments_before_loading(tmp_path, argv, match, capsys):
    # the model name does not exist: an argument error must come first; one line, exit status 2
    assert main(["compress", "--model", "no_such_model", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_unknown_model(tmp_path, capsys):
    assert main(["compress", "--model", "no_such_model", "--method", "svd", "--rank", "2", "--out",
                 str(tmp_path / "o")]) == 2
    assert re.search(r"--model 'no_such_model' is neither a folder with a config.json nor a timm",
                     capsys.readouterr().err)
