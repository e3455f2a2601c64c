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
# # Figure 2 (the paper): Pareto fronts of every compression method
#
# Appendix C's construction: every run of every method and setting is evaluated after each epoch; each
# evaluation is a point (fraction of target parameters, test accuracy) and a method's front is the upper-left
# envelope of its points. One-shot methods (SVD, FWSVD, TFWSVD, and the tensor-train TTM / FWTTM) project once and
# fine-tune; the iterative ones
# (TRP, FWTRP: Algorithms 3–4; OIALR, IEHT: Algorithm 1; IFHT: Algorithm 2) reduce the rank during training.
# The paper's claims checked here: (b) iterative methods beat one-shot at 4–7% of the target parameters;
# (c) the energy cut (IEHT) beats OIALR's σ_max cut. Also: the epoch-budget sweep (trainability), the spread over
# repeats (our noise level), and the per-layer rank trajectories the paper describes in words only.
#
# Reads `runs/fig2`, `runs/budget`, `runs/repeats`, `runs/protocol`; methods and settings come from each run's spec.
#
# Run it: `dvc repro nb_fig2` (its stage), or from the repository root
#
# ```bash
# mkdir -p notebooks/build
# jupytext --to ipynb notebooks/02_fig2_pareto.py -o notebooks/build/02_fig2_pareto.ipynb
# papermill notebooks/build/02_fig2_pareto.ipynb out.ipynb -k python3 -p runs_dir runs -p out_dir reports
# ```
#
# or open this file as a notebook in JupyterLab (`make lab`).

# %% tags=["parameters"]
# Parameters (papermill)
runs_dir = "runs"
out_dir = "reports"

# %%
from IPython.display import Markdown, display

from study import fig2
from study.fronts import pareto_points
from study.notebook import folders
from study.pareto import best_at_budget_table, fronts_table, pareto_figure
from study.runs import load_points, load_rank_trajectories, load_runs
from study.verdicts import noise_level, verdict_frame
from study.writers import markdown_table, publish_figure, publish_table, write_table

runs, out, figures, tables = folders(runs_dir, out_dir)

# %% [markdown]
# ## Pareto fronts

# %%
fig2_runs = load_runs(runs, fig2.SWEEP)
fig2_points = load_points(runs, fig2.SWEEP, fig2_runs)
print(f"{len(fig2_runs)} runs, {len(pareto_points(fig2_points))} Pareto points in runs/fig2")
datasets = ", ".join(sorted(map(str, fig2_runs["dataset"].dropna().unique()))) or "no runs"
fig = pareto_figure(fig2_points, sweep=fig2.SWEEP,
                    title="Figure 2 (the paper): Pareto fronts of SVD, FWSVD, TFWSVD, TTM, FWTTM, TRP, FWTRP, "
                          f"OIALR, IEHT, IFHT (ours: {datasets})")
publish_figure(fig, figures / fig2.PARETO)

# %% [markdown]
# Best accuracy at or below each fraction of target parameters (the fronts read at fixed budgets):

# %%
publish_table(best_at_budget_table(fig2_points, sweep=fig2.SWEEP), tables / fig2.BEST_AT_BUDGET)

# %% [markdown]
# Every front point, with the run and epoch it comes from:

# %%
write_table(fronts_table(fig2_points, sweep=fig2.SWEEP), tables / fig2.FRONTS)
print("written: " + str(tables / f"{fig2.FRONTS}.csv"))

# %% [markdown]
# ## Claims (b) and (c)

# %%
noise = noise_level(load_runs(runs, fig2.REPEATS_SWEEP))
print(noise.source)
trajectories = load_rank_trajectories(runs, fig2.SWEEP, fig2_runs)
first_cuts = fig2.first_cut_table(trajectories)
verdicts = (fig2.verdict_iterative_vs_oneshot(fig2_points, noise)
            + fig2.verdict_energy_vs_sigma_max(fig2_points, noise, first_cuts))
display(Markdown(markdown_table(verdict_frame(verdicts))))

# %% [markdown]
# ## Rank trajectories: OIALR's large first cut
#
# Section 5.1 says OIALR "suffers from non-smooth rank reduction, often involving a large initial cut followed by
# several smaller ones", while IEHT / IFHT cut less severely; the paper shows no figure of it. Per-layer rank
# against epoch from `ranks.json`, for one run per method (the run whose final fraction of target parameters is
# closest to the median of these methods' runs), and, over all runs, the share of the summed rank removed by the
# first cut after conversion and by the largest later cut:

# %%
picked = fig2.pick_trajectory_runs(fig2_runs)
print(picked)
fig = fig2.trajectory_figure(trajectories, picked, "Section 5.1 (the paper, described in words): per-layer rank "
                             "during training, OIALR vs IEHT vs IFHT")
publish_figure(fig, figures / fig2.RANK_TRAJECTORIES)
publish_table(first_cuts, tables / fig2.FIRST_CUT)

# %% [markdown]
# ## Trainability: 1×, 3× and 10× the epoch budget
#
# The paper's hypothesis (Section 5.1) is that trainability, not the projection, limits compressed accuracy, and
# (Section 5.2) that iterative methods need long, stable training to pull ahead: "in scenarios where extended and
# stable training is feasible, iterative compression methods generally outperform their non-iterative
# counterparts". `runs/budget` runs SVD and IEHT at 10, 30 and 100 epochs (`spec.train.epochs`), IEHT's cuts
# spaced in proportion so that every budget makes about ten cuts.

# %%
budget = fig2.budget_table(load_runs(runs, fig2.BUDGET_SWEEP))
publish_table(budget, tables / fig2.BUDGET)
fig = fig2.budget_figure(budget, "Section 5.1 (the paper), trainability: SVD vs IEHT at 1×, 3× and 10× the "
                         "epoch budget")
publish_figure(fig, figures / fig2.BUDGET)

# %% [markdown]
# ## Spread over repeats
#
# `runs/repeats`: the same SVD and IEHT specs at three `train.random_state` values. Their pooled standard
# deviation is the noise level every verdict of `REPORT.md` uses.

# %%
repeats = fig2.repeats_table(load_runs(runs, fig2.REPEATS_SWEEP))
publish_table(repeats, tables / fig2.REPEATS)
fig = fig2.repeats_figure(repeats, "Figure 2 (the paper), spread over repeats (not in the paper): mean ± std over "
                          "random_states")
publish_figure(fig, figures / fig2.REPEATS)

# %% [markdown]
# ## The training protocol (ours)
#
# `runs/protocol`: IEHT at β = 0.9 (epoch cuts every 3 epochs) and at β = 0.97 (step cuts every 4 steps, as
# Figure 3 spaces them), under a constant learning rate (the paper's) or cosine decay to zero, crossed with the
# Adam state of the new core after each cut: `reset`, `carry` (rotated into the new basis), `slice` (OIALR's).

# %%
protocol = fig2.protocol_table(load_runs(runs, fig2.PROTOCOL_SWEEP))
publish_table(protocol, tables / fig2.PROTOCOL)
