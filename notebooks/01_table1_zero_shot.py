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
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table 1 (the paper): zero-shot vs fine-tuned, SVD vs FWSVD on the MLP layers
#
# The paper's Table 1 (Section 5.1) compresses only the MLP layers of a pre-trained ViT-B/16 with a fixed rank,
# by the Euclidean projection (SVD, Eq. 4) and by the Fisher-weighted one (FWSVD, Eq. 5), and reports accuracy
# right after the projection (*zero-shot*) and after fine-tuning. The claim: information projections matter for
# zero-shot accuracy; after fine-tuning the gap nearly closes.
#
# Ours: `runs/table1`, one group of runs per pre-trained base. The vision bases are the width-128 digits and MNIST-1D
# ViTs we pre-train ourselves, three per dataset (`runs/table1/digits_k0` … `mnist1d_k2`: seed k is both the base's
# pre-training seed and the runs' `train.random_state`); each group holds SVD and FWSVD at ranks 8, 16, 32, 64
# (MLP layers only, then fine-tuned), and two zero-shot-only ablations of how FWSVD is read, at ranks 8 and 32: the
# Fisher summed over the other axis (`fwsvd_axis = columns`) and the empirical Fisher (`fisher_labels = empirical`).
# The text base is the real pretrained MiniLM-L6 fine-tuned on the offline text task (`runs/table1/text/*`: one
# base, seed 0; the closest offline analogue of a pretrained ViT-B/16), with SVD / FWSVD zero-shot at ranks 32, 64,
# 128 and fine-tuned (one pass over a fixed 512-paragraph subset) at rank 64. Zero-shot is the run's `start` record
# (evaluated on the full test split right after the projection), fine-tuned its `final` record; a run with
# `epochs = 0` has no fine-tuned value. The full model is a `dense` run in the sweep if there is one, else the
# pre-training runs. The paper's numbers are read from `reports/paper/table1.csv` (copied by hand, see
# `reports/paper/README.md`).
#
# Run it: `dvc repro nb_table1` (its stage), or from the repository root
#
# ```bash
# mkdir -p notebooks/build
# jupytext --to ipynb notebooks/01_table1_zero_shot.py -o notebooks/build/01_table1_zero_shot.ipynb
# papermill notebooks/build/01_table1_zero_shot.ipynb out.ipynb -k python3 -p runs_dir runs -p evidence_dir reports/evidence/runs -p out_dir reports -p paper_dir reports
# ```
#
# or open this file as a notebook in JupyterLab (`make lab`).

# %% tags=["parameters"]
# Parameters (papermill)
runs_dir = "runs"
out_dir = "build/reports"   # git-ignored; the pipeline passes reports
paper_dir = "reports"        # the folder holding paper/table1.csv
evidence_dir = "reports/evidence/runs"   # the committed runs, read for the runs runs/ lacks

# %%
from pathlib import Path

from IPython.display import Markdown, display

from study import table1
from study.notebook import ROOT, folders, report_missing
from study.runs import BASES, load_runs
from study.verdicts import verdict_frame
from study.writers import markdown_table, publish_figure, publish_table

runs, out, figures, tables = folders(runs_dir, out_dir, evidence_dir)
report_missing(runs, table1.SWEEP, BASES)

# %%
table1_runs = load_runs(runs, table1.SWEEP)
pretrain = load_runs(runs, BASES)
ours = table1.table1_table(table1_runs, pretrain)
paper_dir_path = Path(paper_dir) if Path(paper_dir).is_absolute() else ROOT / paper_dir
paper = table1.paper_table1_long(table1.paper_table1(paper_dir_path))
n_seeds = table1_runs["random_state"].nunique()
print(f"{len(table1_runs)} runs in runs/table1, {n_seeds} seed{'s' if n_seeds != 1 else ''}")
_ = publish_table(ours, tables / table1.OURS)

# %% [markdown]
# Ours in the paper's layout (columns: % of MLP parameters kept):

# %%
_ = publish_table(table1.table1_wide(ours), tables / table1.WIDE)

# %% [markdown]
# The paper's Table 1, same layout:

# %%
_ = publish_table(table1.table1_wide(paper), tables / table1.PAPER)

# %%
datasets = ", ".join(sorted(map(str, table1_runs["dataset"].dropna().unique()))) or "no runs"
fig = table1.table1_figure(ours, paper, "Table 1 (the paper): zero-shot and fine-tuned accuracy vs % of MLP "
                           f"parameters, SVD vs FWSVD (ours: {datasets})")
_ = publish_figure(fig, figures / table1.FIGURE)

# %% [markdown]
# The ablation of claim (a)'s reading (zero-shot only): each FWSVD variant beside the default FWSVD and SVD at the
# same rank (means over seeds):

# %%
_ = publish_table(table1.table1_ablation(ours), tables / table1.ABLATION)

# %% [markdown]
# ## Claim (a), by 95 % intervals over seeds
#
# Per dataset and per seed (one base per seed), the zero-shot gap is the mean of FWSVD − SVD over the ranks both
# were run at, and the closing margin is half the zero-shot gap minus the absolute mean fine-tuned gap at the ranks
# both were fine-tuned at. Claim (a) is reproduced when the 95 % t intervals over seeds of both lie above 0, not
# reproduced when either lies below 0, and inconclusive otherwise or with fewer than 3 seeds (the text base has
# one). Each ablation variant is decided the same way on its zero-shot gap over SVD.

# %%
verdicts = table1.verdict_table1(table1_runs, table1.paper_table1(paper_dir_path))
display(Markdown(markdown_table(verdict_frame(verdicts))))

# %% [markdown]
# ## The projection table (zero-shot, MiniLM)
#
# The `projection_table` stage scores every projection of the pretrained MiniLM's MLP layers by Frobenius error,
# Fisher-weighted error and the divergence of the final hidden states (`tables/projection_minilm.md`):

# %%
projection_md = tables / f"{table1.PROJECTION_TABLE}.md"
display(Markdown(projection_md.read_text() if projection_md.is_file()
                 else "_`tables/projection_minilm.md` is not there yet: run the `projection_table` stage._"))
