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
# # Figure 3 (the paper): compression of a BERT-type model on GLUE
#
# The paper's Figure 3 compares the methods on BERT-base fine-tuned on GLUE tasks, with the same Pareto
# construction as Figure 2 (Appendix C). It argues this setting is "more akin to zero-shot comparison": fine-tuning
# BERT for long degrades, so iterative methods have little room and one-shot FWSVD / TFWSVD do well.
#
# Reads `runs/fig3`, with exactly the code of notebook 02. Small profile: the real pretrained MiniLM-L6 fine-tuned
# for two epochs on the offline text task (`pretrain_text`; the split is grouped by source file, so no file's
# paragraphs sit in two splits), every Linear of its blocks as targets, and a short budget (one full pass over the
# training split: 118 steps) — short on purpose, as the paper's own argument is about short BERT budgets; IEHT /
# IFHT cut every 8 steps up to step 96 with an increasing depth schedule (Table 5's form). One run per method
# (seed 0): the verdict can be no more than inconclusive, and says so.
# Paper profile: BERT-base on a GLUE task (`glue:sst2`; other tasks by `dvc exp run -S`).
#
# Run it: `dvc repro nb_fig3` (its stage), or from the repository root
#
# ```bash
# mkdir -p notebooks/build
# jupytext --to ipynb notebooks/03_fig3_bert_glue.py -o notebooks/build/03_fig3_bert_glue.ipynb
# papermill notebooks/build/03_fig3_bert_glue.ipynb out.ipynb -k python3 -p runs_dir runs -p out_dir reports
# ```
#
# or open this file as a notebook in JupyterLab (`make lab`).

# %% tags=["parameters"]
# Parameters (papermill)
runs_dir = "runs"
evidence_dir = "reports/evidence/runs"   # the committed runs, read for the runs runs/ lacks
out_dir = "build/reports"   # git-ignored; the pipeline passes reports

# %%
from IPython.display import Markdown, display

from study import fig3
from study.fronts import pareto_points
from study.notebook import folders, publish_figure_or_missing, report_missing
from study.pareto import best_at_budget_table, fronts_table, pareto_figure
from study.runs import load_points, load_runs
from study.verdicts import NOISE_SWEEP, noise_level, verdict_frame
from study.writers import markdown_table, publish_table, write_table

runs, out, figures, tables = folders(runs_dir, out_dir, evidence_dir)
report_missing(runs, fig3.SWEEP)

# %%
fig3_runs = load_runs(runs, fig3.SWEEP)
fig3_points = load_points(runs, fig3.SWEEP, fig3_runs)
print(f"{len(fig3_runs)} runs, {len(pareto_points(fig3_points))} Pareto points in runs/fig3")
datasets = ", ".join(sorted(map(str, fig3_runs["dataset"].dropna().unique()))) or "no runs"
_ = publish_figure_or_missing(fig3_points, figures / fig3.PARETO, lambda: pareto_figure(
    fig3_points, sweep=fig3.SWEEP, title=f"Figure 3 (the paper): Pareto fronts of the language model (ours: {datasets})"),
    [fig3.SWEEP], runs)

# %% [markdown]
# Best accuracy at or below each fraction of target parameters (the fronts read at fixed budgets):

# %%
_ = publish_table(best_at_budget_table(fig3_points, sweep=fig3.SWEEP), tables / fig3.BEST_AT_BUDGET)

# %% [markdown]
# Every front point, with the run and epoch it comes from:

# %%
write_table(fronts_table(fig3_points, sweep=fig3.SWEEP), tables / fig3.FRONTS)
print("written: " + str(tables / f"{fig3.FRONTS}.csv"))

# %% [markdown]
# ## Claim (h): one-shot at least as good as iterative under a short budget (Section 5.2)

# %%
noise = noise_level(load_runs(runs, NOISE_SWEEP))
print(noise.source)
verdicts = fig3.verdict_language_model(fig3_points, noise)
display(Markdown(markdown_table(verdict_frame(verdicts))))
