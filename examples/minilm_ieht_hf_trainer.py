# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # IEHT inside `transformers.Trainer`: MiniLM on the offline text task
#
# The paper's IEHT (Algorithm 1 with the energy cut) compressing the real pretrained MiniLM-L6 while
# Hugging Face's `Trainer` fine-tunes it, through `lowrank.IterativeCompressor` and
# `lowrank.LowRankTrainerCallback`. The callback converts every Linear of the six transformer layers
# (`targets="auto"`) to `U S Vᵀ` after epoch `delay`, cuts to the smallest rank that keeps
# `threshold` of each layer's energy after every later epoch, and edits the Trainer's AdamW in place
# (Adam's state carried into the new basis). At the end the model is compiled to `A·B`, scored, saved
# and reloaded.
#
# A notebook of the library's use, not of a paper artifact. The pipeline runs it (`dvc repro
# example_hf_trainer`) with the tiny budget of `example_hf_trainer` in params.yaml, so the example is
# known to run; `python examples/minilm_ieht_hf_trainer.py` runs it with the defaults below (a larger
# budget, not timed). `transformers.Trainer` needs `accelerate` (pinned in requirements.txt).

# %% tags=["parameters"]
epochs = 5
train_samples = 512
test_samples = 256
threshold = 0.9
delay = 1
learning_rate = 5e-5
cache_dir = "cache/text"
out_dir = "cache/examples/minilm_ieht"
summary_json = ""  # where to write the outcome (empty: nowhere)

# %%
import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainingArguments

import lowrank
from lowrank.data import build_text_corpus, calibration_subset, get_dataset
from lowrank.models import classifier_logits, minilm_classifier

torch.manual_seed(0)
build_text_corpus(cache_dir)                      # cached after the first call
train_full = get_dataset("text", "train", cache_dir=cache_dir)
test_full = get_dataset("text", "test", cache_dir=cache_dir)
# random subsets (the splits are stored in label order)
train = calibration_subset(train_full, min(train_samples, len(train_full)), random_state=0)
test = calibration_subset(test_full, min(test_samples, len(test_full)), random_state=1)
model = minilm_classifier(num_labels=len(train_full.classes))


def accuracy(net) -> float:
    net.eval()
    right = seen = 0
    with torch.no_grad():
        for batch in DataLoader(test, batch_size=64, collate_fn=test_full.collate_fn):
            right += int((classifier_logits(net, batch).argmax(-1) == batch["labels"]).sum())
            seen += len(batch["labels"])
    return right / seen


dense_params = sum(p.numel() for p in model.parameters())

# %%
compressor = lowrank.IterativeCompressor(model, method="ieht", oialr_threshold=threshold,
                                         oialr_frequency=1, oialr_type="epoch", delay=delay)
args = TrainingArguments(out_dir, num_train_epochs=epochs, per_device_train_batch_size=32,
                         learning_rate=learning_rate, lr_scheduler_type="constant", weight_decay=0.05,
                         report_to=[], save_strategy="no", logging_strategy="epoch", use_cpu=True)
trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=train_full.collate_fn,
                  callbacks=[lowrank.LowRankTrainerCallback(compressor, compile_at_end=True)])
trainer.train()

# %% [markdown]
# The rank trajectory (one record per conversion / cut) and the compiled model's size and accuracy.

# %%
for record in compressor.trajectory:
    ranks = record["ranks"]
    print(f"epoch {record['epoch']}: {record['event']}, mean rank {sum(ranks.values()) / len(ranks):.1f}")
params = sum(p.numel() for p in model.parameters())
test_accuracy = accuracy(model)
print(f"parameters {params:,} of {dense_params:,} ({params / dense_params:.1%}); test accuracy {test_accuracy:.3f}")

# %%
lowrank.save_compressed(model, out_dir + "/model", metadata={"trajectory": compressor.trajectory})
reloaded = lowrank.load_compressed(minilm_classifier(num_labels=len(train_full.classes)), out_dir + "/model")
batch = next(iter(DataLoader(test, batch_size=8, collate_fn=test_full.collate_fn)))
with torch.no_grad():
    torch.testing.assert_close(classifier_logits(reloaded, batch), classifier_logits(model.eval(), batch),
                               rtol=0, atol=0)
print("reloaded: the same logits")

# %%
if summary_json:
    from lowrank.utils import atomic_write_json

    atomic_write_json(summary_json, {
        "epochs": epochs, "train_samples": len(train), "test_samples": len(test), "threshold": threshold,
        "events": [r["event"] for r in compressor.trajectory],
        "mean_rank_per_record": [sum(r["ranks"].values()) / len(r["ranks"]) for r in compressor.trajectory],
        "parameters": params, "dense_parameters": dense_params, "test_accuracy": test_accuracy,
        "reload_bit_identical": True,            # the assert_close above (rtol = atol = 0) passed
    })
