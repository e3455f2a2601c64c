"""Every code block of README.md and docs/ runs in a test, as written: the own-model page's Python blocks executed
in a fresh folder and its timm command line; a spec file written by a heredoc validated and its run commands
parsed by the command line down to the run (the base loaded); make targets, dvc stages and `dvc exp run -S`
keys looked up where they are defined; the layout's paths present. A block no rule covers fails
(docs/cluster.md's blocks belong to tests/test_slurm.py)."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cluster.md")]
OWN = ROOT / "docs" / "own-model.md"


def _section() -> str:
    return OWN.read_text()


def _blocks(lang: str, text: str | None = None) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section() if text is None else text, flags=re.S)


def _all_blocks() -> list[tuple[str, str, str]]:
    """(file, language, body) of every fenced block of README.md and docs/."""
    return [(p.name, lang, body) for p in DOCS
            for lang, body in re.findall(r"```(\w*)\n(.*?)```", p.read_text(), flags=re.S)]


def _commands(body: str) -> list[str]:
    """A bash block's commands: continuation lines joined, comments and heredoc bodies dropped."""
    body = re.sub(r"<<'EOF'\n.*?\nEOF\n", "<<'EOF'\n", body, flags=re.S).replace("\\\n", " ")
    return [c.split("  #")[0].strip() for c in body.splitlines() if c.strip() and not c.lstrip().startswith("#")]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def _dvc_stages() -> set[str]:
    from study.notebook import foreach_items

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    names = set(stages)
    for name, s in stages.items():
        if "foreach" in s:
            names |= {f"{name}@{k}" for k in foreach_items(s["foreach"], ROOT)}
    return names


def _check_command(cmd: str, heredocs: dict[str, str]) -> str:
    """What the command was checked against (raises when it does not hold)."""
    argv = shlex.split(cmd)
    if argv[0] == "make":
        assert set(argv[1:]) <= _make_targets(), cmd
        return "make target"
    if argv[0] == "cat" and argv[1] == ">":
        return "heredoc"
    if argv[0] == ".venv/bin/dvc":
        if argv[1] == "repro":
            assert set(a for a in argv[2:] if not a.startswith("-")) <= _dvc_stages(), cmd
            return "dvc stage"
        if argv[1:3] == ["exp", "run"]:
            params = yaml.safe_load((ROOT / "params.yaml").read_text())
            for s in (argv[i + 1] for i, a in enumerate(argv) if a == "-S"):
                node = params
                for k in s.split("=")[0].split("."):
                    assert isinstance(node, dict) and k in node, f"{cmd}: {s} is not a key of params.yaml"
                    node = node[k]
            return "params key"
        assert argv[1] in {"queue", "exp"}, cmd
        return "dvc command"
    if argv[:3] == [".venv/bin/python", "-m", "lowrank"] or (argv[0] == ".venv/bin/torchrun" and "lowrank" in argv):
        return "lowrank cli"
    raise AssertionError(f"no test covers the command {cmd!r}")


def test_every_block_is_covered() -> None:
    """Each block is a language a test runs, each bash command one a rule checks."""
    seen = set()
    for name, lang, body in _all_blocks():
        assert lang in {"bash", "python", "text"}, f"{name}: a ```{lang or '(plain)'} block no test runs"
        if lang == "python":
            assert name == OWN.name, f"{name}: Python blocks are run from docs/own-model.md only"
        if lang == "bash":
            heredocs = dict(re.findall(r"cat > (\S+) <<'EOF'\n(.*?)\nEOF\n", body, flags=re.S))
            seen |= {_check_command(c, heredocs) for c in _commands(body)}
    assert {"make target", "lowrank cli", "params key", "heredoc"} <= seen


def test_the_layout_names_paths_that_exist() -> None:
    (tree,) = _blocks("text", (ROOT / "docs" / "layout.md").read_text())
    folder = ""
    for line in tree.splitlines():
        m = re.match(r"^( *)(\S+)\s", line + " ")
        if not m or len(m.group(1)) not in (0, 2) or m.group(2) in {",", "and"}:
            continue
        names = [n.strip(",") for n in m.group(2).split(",") if n.strip(",")]
        for n in names:
            path = (ROOT / n) if not m.group(1) else (ROOT / folder / n)
            assert path.exists(), f"docs/layout.md names {path.relative_to(ROOT)}, which does not exist"
        if not m.group(1):
            folder = names[0]


def test_the_help_prints_the_compress_example_as_two_lines(capsys) -> None:
    from lowrank.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if "python -m lowrank compress" in line)
    following = out.splitlines()[out.splitlines().index(first) + 1]
    assert first.split("#")[0].rstrip().endswith("--params-fraction 0.25 \\")
    assert following.lstrip().startswith("--calibration digits --out compressed/")


def test_one_experiment_from_a_spec_file(tmp_path, monkeypatch) -> None:
    """docs/experiments.md: the heredoc writes a valid spec whose base loads into its model, and both run
    commands reach the run with that spec and their output folders."""
    import lowrank.experiment as experiment
    from lowrank.cli import main
    from lowrank.data import num_classes
    from lowrank.models import build_model

    (body,) = _blocks("bash", (ROOT / "docs" / "experiments.md").read_text())
    name, spec_text = re.search(r"cat > (\S+) <<'EOF'\n(.*?)\nEOF\n", body, flags=re.S).groups()
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(spec_text)
    (tmp_path / "bases").mkdir()
    spec = yaml.safe_load(spec_text)
    (tmp_path / spec["base"]).symlink_to(ROOT / spec["base"])
    calls = []
    final = {"accuracy": 0.0, "compression_ratio_target": 1.0}      # what the command prints after the run
    monkeypatch.setattr(experiment, "run_experiment", lambda s, out, **kw: calls.append((s, str(out))) or final)
    for cmd in _commands(body):
        argv = shlex.split(cmd)
        if "lowrank" in argv and "run" in argv:
            main(argv[argv.index("lowrank") + 1:])
    assert [out for _, out in calls] == ["runs/ieht", "runs/ieht_ddp"]
    s = experiment.validate_spec(calls[0][0])
    model = build_model(s["model"], num_classes=num_classes(s["dataset"]), **s["model_args"])
    experiment.load_base(model, s["base"])


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
