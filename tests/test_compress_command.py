"""``python -m lowrank compress``: a timm name with a safetensors state dict and a Hugging Face folder,
compressed, saved, reloaded, timed; a causal LM's perplexity before and after on held-out text (checked
against a hand computation from the logits); calibration from a text file, a ``datasets`` folder and the
registry's text (cached where ``--cache-dir`` says, and said so); bad arguments refused before the model
is loaded."""
from __future__ import annotations

import json
import math
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


# ------------------------------------------------------------------------------ own text, causal LMs, the cache
_LINES = [f"the factor {i} of a low rank weight is {('small', 'large', 'kept')[i % 3]} after the cut"
          for i in range(40)]   # 40 samples: the last 4 (40 // 10) are held out


def _gpt2_folder(folder, lines=_LINES, n_positions=16):
    """A random-init GPT-2 and a byte-level BPE tokenizer trained on ``lines``, saved as one HF folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=tok.get_vocab_size(),
                                       n_positions=n_positions, bos_token_id=0, eos_token_id=0))
    model.save_pretrained(str(folder))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(str(folder))
    return folder


def _hand_mean_nll(model, ids, window):
    """Mean next-token NLL over consecutive windows, by hand: logsumexp of the logits minus the target's logit."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids), window):
            w = torch.tensor(ids[start:start + window])
            if len(w) < 2:
                continue
            logits = model(w[None]).logits[0, :-1].double()
            total += float((torch.logsumexp(logits, dim=-1) - logits[torch.arange(len(w) - 1), w[1:]]).sum())
            count += len(w) - 1
    return total / count, count


def test_causal_lm_perplexity_before_and_after_from_a_text_file(tmp_path, capsys):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    import lowrank
    from tests.tolerances import sum_rounding
    folder = _gpt2_folder(tmp_path / "gpt2")
    (tmp_path / "corpus.txt").write_text("\n\n".join(_LINES) + "\n")   # blank lines are not samples
    out = tmp_path / "out"
    assert main(["compress", "--model", str(folder), "--method", "fwsvd", "--params-fraction", "0.5",
                 "--calibration", str(tmp_path / "corpus.txt"), "--perplexity-tokens", "40", "--repeats", "1",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    ppl, comp = report["perplexity"], report["compression"]
    assert comp["calibration"]["samples"] == 36                 # 40 lines less the 4 held out
    assert report["calibration_source"]["samples"] == 40
    # the held-out stream by hand: the last 4 lines, tokenized by the folder's tokenizer, first 40 tokens
    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = [i for text in _LINES[-4:] for i in tok(text)["input_ids"]]
    assert len(ids) > 40                                         # the budget, not the text, sets the length
    ids = ids[:40]
    assert (ppl["tokens"], ppl["window"], ppl["requested_tokens"]) == (40, 16, 40)
    tol = sum_rounding(40, 1.0, margin=64)   # the same float32 logits, two float64 formulas summed over ≤ 40 tokens
    for key, model in (("before", GPT2LMHeadModel.from_pretrained(str(folder)).eval()),
                       ("after", lowrank.from_pretrained(out).eval())):
        mean, count = _hand_mean_nll(model, ids, window=16)
        assert count == ppl["predicted_tokens"] == 15 + 15 + 7   # windows of 16, 16, 8 tokens
        assert ppl[f"mean_nll_{key}"] == pytest.approx(mean, rel=tol)
        assert ppl[key] == pytest.approx(math.exp(mean), rel=tol * (1 + mean))   # d exp(x) / exp(x) = dx
    assert ppl["before"] != ppl["after"]
    assert f"perplexity {ppl['before']:.2f} → {ppl['after']:.2f}" in line
    assert f"target params {100 * comp['achieved_fraction']:.1f}%" in line
    assert f"whole model {100 * comp['achieved_fraction_total']:.1f}%" in line
    assert report["cache"]["written"] == [] and "cached in" not in line   # local text writes no cache


def test_local_text_holds_out_the_last_tenth_or_a_split(tmp_path):
    import datasets

    from lowrank.data import load_local_text
    (tmp_path / "a.txt").write_text("\n".join(f"  line {i}  " if i % 5 else "" for i in range(26)))
    text = load_local_text(tmp_path / "a.txt")
    samples = [f"line {i}" for i in range(26) if i % 5]          # 20 non-empty lines, stripped
    assert text.calibration == samples[:18] and text.held_out == samples[18:]
    rows = {"sentence": [f"row {i}" for i in range(12)] + [""], "n": list(range(13))}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "one"))
    text = load_local_text(tmp_path / "one")                     # the only string column; the empty row skipped
    assert (text.calibration, text.held_out, text.source["column"]) == (rows["sentence"][:11], ["row 11"], "sentence")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"]}),
                          "validation": datasets.Dataset.from_dict({"text": ["c"]})}).save_to_disk(str(tmp_path / "dd"))
    text = load_local_text(tmp_path / "dd")
    assert (text.calibration, text.held_out, text.source["held_out"]) == (["a", "b"], ["c"], "split 'validation'")


def test_datasets_folder_with_a_named_column(tmp_path, capsys):
    import datasets
    folder = _gpt2_folder(tmp_path / "gpt2")
    datasets.Dataset.from_dict({"sentence": _LINES, "topic": ["factors"] * len(_LINES)}).save_to_disk(
        str(tmp_path / "ds"))
    out = tmp_path / "out"
    assert main(["compress", "--model", str(folder), "--method", "fwsvd", "--params-fraction", "0.5",
                 "--calibration", str(tmp_path / "ds"), "--calibration-column", "sentence",
                 "--calibration-samples", "8", "--batch-size", "4", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["compression"]["calibration"]["samples"] == 8
    assert report["calibration_source"]["column"] == "sentence"
    assert "last tenth of the rows" in report["perplexity"]["held_out"] and report["perplexity"]["tokens"] > 1
    assert "perplexity " in capsys.readouterr().out


def _bad_inputs(tmp_path):
    import datasets
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    (tmp_path / "ok.txt").write_text("\n".join(_LINES))
    datasets.Dataset.from_dict({"n": [1, 2]}).save_to_disk(str(tmp_path / "numbers"))
    datasets.Dataset.from_dict({"a": ["x", "y"], "b": ["u", "v"]}).save_to_disk(str(tmp_path / "two"))
    return {"missing": [str(tmp_path / "missing.txt")], "blank": [str(tmp_path / "blank.txt")],
            "numbers": [str(tmp_path / "numbers")], "two": [str(tmp_path / "two")],
            "nope": [str(tmp_path / "two"), "--calibration-column", "c"],
            "column_on_file": [str(tmp_path / "ok.txt"), "--calibration-column", "a"],
            "text_for_timm": [str(tmp_path / "ok.txt")], "unknown": ["no_such_dataset"]}


@pytest.mark.parametrize("case, match", [
    ("missing", r"--calibration '.*missing.txt': no such file or folder"),
    ("blank", r"--calibration '.*blank.txt' has no text \(no non-empty line\)"),
    ("numbers", r"--calibration '.*numbers' has no text column \(columns: \['n'\]\).*--calibration-column"),
    ("two", r"has several text columns \(columns: \['a', 'b'\]\).*--calibration-column"),
    ("nope", r"--calibration-column 'c' is not a text column .* text columns: \['a', 'b'\]"),
    ("column_on_file", r"--calibration-column 'a' applies to a datasets folder"),
    ("text_for_timm", r"is text: it needs --model to be a Hugging Face folder with a tokenizer"),
    ("unknown", r"--calibration 'no_such_dataset': no such file or folder, and not a registry dataset"),
])
def test_bad_calibration_refused_before_the_model(tmp_path, case, match, capsys):
    # --model names nothing: the calibration error must come first; one line, exit status 2
    argv = ["compress", "--model", "no_such_model", "--method", "fwsvd", "--params-fraction", "0.5",
            "--calibration", *_bad_inputs(tmp_path)[case], "--out", str(tmp_path / "o")]
    capsys.readouterr()                                          # the fixtures' own progress output
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_registry_text_is_cached_where_the_user_says_and_printed(tmp_path, capsys, monkeypatch):
    import dataclasses
    import functools

    from lowrank.data import REGISTRY, text_dataset
    # the default corpus (900 paragraphs a library) takes most of a minute to build on a busy machine; 30 a
    # library goes through the same builder, cache and splits
    monkeypatch.setitem(REGISTRY, "text", dataclasses.replace(REGISTRY["text"],
                                                              loader=functools.partial(text_dataset, per_label=30)))
    folder = _gpt2_folder(tmp_path / "gpt2")
    cache = tmp_path / "cache"
    argv = ["compress", "--model", str(folder), "--method", "svd", "--params-fraction", "0.5", "--calibration",
            "text", "--calibration-samples", "4", "--perplexity-tokens", "32", "--repeats", "1",
            "--cache-dir", str(cache), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    line = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    written = report["cache"]["written"]
    assert report["cache"]["dir"] == str(cache.absolute()) and report["cache"]["default"] == "cache/text"
    assert any(w.startswith("text-corpus-") and w.endswith(".jsonl") for w in written)
    assert sorted(p.name for p in cache.iterdir()) == written
    assert f"cached in {cache.absolute()} (--cache-dir, default cache/text)" in line
    assert "validation split" in report["perplexity"]["held_out"] and report["perplexity"]["tokens"] == 32
    assert main(argv) == 0                                       # the corpus is read, not rebuilt: nothing printed
    assert "cached in" not in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "report.json").read_text())["cache"]["written"] == []


def test_help_names_the_new_options(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--calibration-column", "--perplexity-tokens", "--cache-dir", "default: cache/text",
                   "one sample per non-empty line", "Held out for perplexity"):
        assert option in text


def test_causal_lm_fisher_leaves_padding_out(tmp_path):
    from transformers import GPT2LMHeadModel

    from lowrank.checkpoint import _causal_lm_forward
    from lowrank.fisher import default_forward, diagonal_fisher
    model = GPT2LMHeadModel.from_pretrained(str(_gpt2_folder(tmp_path / "gpt2"))).eval()
    names = [f"transformer.h.{i}.{n}" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc")]
    ids = torch.randint(1, 300, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0                                              # sample 0 has 5 tokens and 4 of padding
    padded = {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask, "labels": ids}
    alone = [{"input_ids": ids[:1, :5], "attention_mask": mask[:1, :5], "labels": ids[:1, :5]},
             {"input_ids": ids[1:], "attention_mask": mask[1:], "labels": ids[1:]}]
    # the Fisher is a sum over samples of squared per-sample gradients: the padded batch, masked, gives the sum
    # of each sample's Fisher alone (empirical labels: no random draws)
    fisher = diagonal_fisher(model, [padded], names, _causal_lm_forward, labels="empirical")
    separate = [diagonal_fisher(model, [b], names, _causal_lm_forward, labels="empirical") for b in alone]
    unmasked = diagonal_fisher(model, [padded], names, default_forward, labels="empirical")
    from tests.tolerances import EPS32, sum_rounding
    for n in names:
        scale = float(fisher[n].max())
        # float32 attention sums over 5 vs 9 positions, through two blocks and the squaring (margin 64)
        torch.testing.assert_close(fisher[n], separate[0][n] + separate[1][n], rtol=0.0,
                                   atol=sum_rounding(9, scale, margin=64, eps=EPS32))
        assert (unmasked[n] - fisher[n]).abs().max() > 0.1 * scale   # the padding's own terms, were it counted


def test_causal_lm_held_out_rows_of_a_token_file_or_none(tmp_path, capsys):
    folder = _gpt2_folder(tmp_path / "gpt2")
    ids = torch.randint(1, 300, (12, 10), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[9, 6:] = 0                                              # a padded held-out row: 6 real tokens
    save_file({"input_ids": ids, "attention_mask": mask}, str(tmp_path / "tokens.safetensors"))
    common = ["--model", str(folder), "--method", "svd", "--params-fraction", "0.5", "--repeats", "1"]
    assert main(["compress", *common, "--calibration", str(tmp_path / "tokens.safetensors"),
                 "--calibration-samples", "8", "--out", str(tmp_path / "a")]) == 0
    ppl = json.loads((tmp_path / "a" / "report.json").read_text())["perplexity"]
    assert ppl["tokens"] == 3 * 10 + 6 and "the rows after the first 8" in ppl["held_out"]
    (tmp_path / "few.txt").write_text("\n".join(_LINES[:9]))   # 9 lines: 9 // 10 = 0 held out
    assert main(["compress", *common, "--calibration", str(tmp_path / "few.txt"), "--out", str(tmp_path / "b")]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    note = json.loads((tmp_path / "b" / "report.json").read_text())["perplexity"]
    assert note.startswith("not measured:") and "fewer than 10 samples" in note
    assert f"perplexity {note}" in line
