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
# # Figure 5 (the paper): global vs local rank selection
#
# Appendix D compares per-layer (local) energy thresholds, IEHT and IFHT, with one threshold over the spectra of
# all layers together (globalIEHT, globalIFHT). The claim (e): local beats global; globalIEHT "does not perform
# well", globalIFHT "underperforms, though not significantly". Reads `runs/fig5`.
#
# Run it: `dvc repro nb_fig5` (its stage), or from the repository root
#
# ```bash
# mkdir -p notebooks/build
# jupytext --to ipynb notebooks/05_fig5_global_vs_local.py -o notebooks/build/05_fig5_global_vs_local.ipynb
# papermill notebooks/build/05_fig5_global_vs_local.ipynb out.ipynb -k python3 -p runs_dir runs -p out_dir reports
# ```
#
# or open this file as a notebook in JupyterLab (`make lab`).

# %% tags=["parameters"]
# Parameters (papermill)
runs_dir = "runs"
out_dir = "reports"

# %%
from IPython.display import Markdown, display

from study import fig5
from study.notebook import folders
from study.pareto import best_at_budget_table, fronts_table, pareto_figure
from study.runs import load_points, load_runs
from study.verdicts import NOISE_SWEEP, noise_level, verdict_frame
from study.writers import markdown_table, publish_figure, publish_table, write_table

runs, out, figures, tables = folders(runs_dir, out_dir)

# %%
fig5_runs = load_runs(runs, fig5.SWEEP)
fig5_points = load_points(runs, fig5.SWEEP, fig5_runs)
print(f"{len(fig5_runs)} runs in runs/fig5")
datasets = ", ".join(sorted(map(str, fig5_runs["dataset"].dropna().unique()))) or "no runs"
fig = pareto_figure(fig5_points, sweep=fig5.SWEEP,
                    title=f"Figure 5 (the paper): global vs local rank selection (ours: {datasets})")
publish_figure(fig, figures / fig5.FIGURE)

# %%
publish_table(best_at_budget_table(fig5_points, sweep=fig5.SWEEP),
              tables / fig5.BEST_AT_BUDGET)
write_table(fronts_table(fig5_points, sweep=fig5.SWEEP), tables / fig5.FRONTS)

# %% [markdown]
# ## Claim (e)

# %%
noise = noise_level(load_runs(runs, NOISE_SWEEP))
print(noise.source)
verdicts = fig5.verdict_local_vs_global(fig5_points, noise)
display(Markdown(markdown_table(verdict_frame(verdicts))))
