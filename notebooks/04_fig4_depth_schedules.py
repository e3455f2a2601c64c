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
# # Figure 4 (the paper): cutoff schedules with depth
#
# The paper's ablation (Section 5.1, Figure 4) varies how the tolerated error of each cut depends on the layer's
# depth: constant, increasing with depth (early layers keep more) or decreasing. The claim (d): increasing ≥
# constant ≥ decreasing, because early layers stabilise first and need flexibility. Our schedules keep the mean
# tolerated error fixed (`lowrank/schedules.py`). Reads `runs/fig4` (`spec.method_args.oialr_depth_schedule`).
#
# Run it: `dvc repro nb_fig4` (its stage), or from the repository root
#
# ```bash
# mkdir -p notebooks/build
# jupytext --to ipynb notebooks/04_fig4_depth_schedules.py -o notebooks/build/04_fig4_depth_schedules.ipynb
# papermill notebooks/build/04_fig4_depth_schedules.ipynb out.ipynb -k python3 -p runs_dir runs -p out_dir reports
# ```
#
# or open this file as a notebook in JupyterLab (`make lab`).

# %% tags=["parameters"]
# Parameters (papermill)
runs_dir = "runs"
out_dir = "reports"

# %%
from IPython.display import Markdown, display

from study import fig4
from study.notebook import folders
from study.pareto import best_at_budget_table, fronts_table, pareto_figure, with_label
from study.runs import load_points, load_runs
from study.verdicts import NOISE_SWEEP, noise_level, verdict_frame
from study.writers import markdown_table, publish_figure, publish_table, write_table

runs, out, figures, tables = folders(runs_dir, out_dir)

# %%
fig4_runs = load_runs(runs, fig4.SWEEP)
fig4_points = with_label(load_points(runs, fig4.SWEEP, fig4_runs), ["method", "schedule"])
print(f"{len(fig4_runs)} runs in runs/fig4")
datasets = ", ".join(sorted(map(str, fig4_runs["dataset"].dropna().unique()))) or "no runs"
fig = pareto_figure(fig4_points, hue="label", sweep=fig4.SWEEP,
                    title="Figure 4 (the paper): Pareto fronts per cutoff schedule with depth "
                          f"(ours: {datasets})")
publish_figure(fig, figures / fig4.FIGURE)

# %%
publish_table(best_at_budget_table(fig4_points, hue="label", sweep=fig4.SWEEP),
              tables / fig4.BEST_AT_BUDGET)
write_table(fronts_table(fig4_points, hue="label", sweep=fig4.SWEEP), tables / fig4.FRONTS)

# %% [markdown]
# ## Claim (d)

# %%
noise = noise_level(load_runs(runs, NOISE_SWEEP))
print(noise.source)
verdicts = fig4.verdict_depth_schedules(fig4_points, noise)
display(Markdown(markdown_table(verdict_frame(verdicts))))
