"""The README's "Compress your own model" section runs as written: its Python blocks, executed in a fresh
folder, and its timm command line."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Compress your own model")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), flags=re.S)


def test_the_section_has_the_three_uses():
    blocks = _blocks("python")
    assert len(blocks) == 3
    assert "lowrank.compress(" in blocks[0] and "load_compressed" in blocks[0]
    assert "IterativeCompressor" in blocks[1] and "optimizer_after_change" in blocks[1]
    assert "LowRankTrainerCallback" in blocks[2] and "Trainer(" in blocks[2]


def test_one_call_and_your_loop(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_call, loop, _ = _blocks("python")
    exec(compile(one_call, "README.md (one call)", "exec"), {})
    exec(compile(loop, "README.md (your loop)", "exec"), {})
    out = capsys.readouterr().out
    assert "of the target parameters" in out and "['convert', 'cut', 'cut']" in out
    assert (tmp_path / "vit_fwsvd" / "structure.json").is_file()
    assert (tmp_path / "vit_ieht" / "model.safetensors").is_file()


def test_hugging_face_trainer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(_blocks("python")[2], "README.md (HF Trainer)", "exec"), {})
    assert (tmp_path / "minilm_ieht" / "structure.json").is_file()


def test_the_timm_command(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    from lowrank.cli import main

    monkeypatch.chdir(tmp_path)
    commands = [c for c in _blocks("bash")[0].replace("\\\n", " ").splitlines() if c.strip()]
    timm_cmd = next(c for c in commands if "--weights vit.safetensors" in c)
    argv = shlex.split(timm_cmd)
    assert argv[:3] == [".venv/bin/python", "-m", "lowrank"]
    model_args = json.loads(argv[argv.index("--model-args") + 1])
    torch.manual_seed(0)
    base = timm.create_model(argv[argv.index("--model") + 1], pretrained=False, **model_args)
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, "vit.safetensors")
    main(argv[3:] + ["--repeats", "2", "--calibration-samples", "64"])
    report = json.loads((tmp_path / "compressed" / "report.json").read_text())
    assert report["compression"]["achieved_fraction"] <= 0.5 and report["inference"]["speedup"] > 0
