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
# # Proposition 4.3 of the paper, checked numerically
#
# The paper (Section 4, Proposition 4.3, proof in Appendix A.1; OIALR bound in Appendix B.1.1) claims for the
# (mirror-)proximal gradient method of Eq. (9) on `L(W) + lambda rank(W)` with `0 < alpha_min <= alpha_n <= sigma_n / L`:
#
# 1. `(L + lambda rank)(W_n)` is non-increasing and convergent;
# 2. `sum_n |W_{n+1} - W_n| < infinity`;
# 3. `W_n` converges to a critical point of `L + lambda rank`;
# 4. with `F_n = 1/2 |I_n^{1/2} W|^2`, `sigma_min(I^{1/2} W*) >= sqrt(alpha_min lambda)`, "and thus" `sigma_min(W*) >= sqrt(sigma_max(I) alpha_min lambda)`.
#
# This notebook is thin: the algorithms live in `theory/` (`prox.py`: Eq. (9); `claims.py`: each claim as a predicate
# and the counterexamples; `experiment.py`: the runs; `plots.py`: figures and tables). The property tests in
# `tests/theory/` check every claim on hundreds of random problems; here we plot one Euclidean and one Fisher-metric
# run and write the claim table.
#
# Run it: `dvc repro nb_theory` (its stage), or from the repository root
#
# ```bash
# mkdir -p notebooks/build
# jupytext --to ipynb notebooks/06_theory.py -o notebooks/build/06_theory.ipynb
# papermill notebooks/build/06_theory.ipynb out.ipynb -k python3 -p out_dir reports/theory
# ```
#
# or open this file as a notebook in JupyterLab (`make lab`).

# %% tags=["parameters"]
# Parameters (papermill)
out_dir = "build/reports/theory"   # the pipeline passes reports/theory
m = 6
n = 5
extra_rows = 4
a_condition = 3.0
metric_condition = 10.0
metric_scale = 10.0
lam_fraction = 0.1
alpha_fraction = 1.0
alpha_low = 0.5
random_state = 0
max_iter = 20000
demo_random_states = [0, 1, 2, 3, 4]
demo_lam = 1.5

# %%
import sys
from pathlib import Path

# Make the repository importable when the kernel starts in notebooks/ rather than the root.
_root = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "theory" / "__init__.py").exists()), None)
if _root is not None and str(_root) not in sys.path:
    sys.path.insert(0, str(_root))

from IPython.display import Markdown, display

from lowrank.utils import set_random_state
from theory.claims import claim_table, evaluate_run
from theory.experiment import deep_linear_rank_reduction, proposition_runs
from theory.plots import (
    plot_objective,
    plot_path_length,
    plot_rank_reduction,
    plot_singular_values,
    save_figure,
    write_table,
)

from study import prop43   # after theory.plots: it picks matplotlib's backend first

set_random_state(random_state)
out = Path(out_dir)

# %% [markdown]
# ## Runs of Eq. (9): Euclidean metric and Fisher metric `I_n -> I` acting on the rows

# %%
result = proposition_runs(
    m=m, n=n, extra_rows=extra_rows, a_condition=a_condition, metric_condition=metric_condition,
    metric_scale=metric_scale, lam_fraction=lam_fraction, alpha_fraction=alpha_fraction, alpha_low=alpha_low,
    random_state=random_state, max_iter=max_iter,
)
runs = result["runs"]
for label, run in runs.items():
    print(f"{label}: {run.n_steps} steps, converged={run.converged}, rank {run.rank[0]} -> {run.rank[-1]}, "
          f"alpha_min={run.alpha_min:.4g}, lambda={run.lam:.4g}")

# %%
written = []
written += save_figure(plot_objective(runs), out, prop43.OBJECTIVE)
written += save_figure(plot_path_length(runs), out, prop43.PATH_LENGTH)
for label, run in runs.items():
    written += save_figure(plot_singular_values(run, label), out, prop43.singular_values_stem(label))
print("\n".join(str(p) for p in written))

# %% [markdown]
# ## Every claim: holds / fails (counterexample) / corrected form holds

# %%
rows = claim_table(list(runs.values()), result["oialr"])
_, _, md = write_table(rows, out, prop43.CLAIMS)
display(Markdown(md))

# %%
checks = []
for label, run in runs.items():
    for key, check in evaluate_run(run).items():
        checks.append({"run": label, "predicate": check.name, "holds": check.holds,
                       "lhs": f"{check.lhs:.6g}", "rhs": f"{check.rhs:.6g}", "detail": check.detail})
_, _, md = write_table(checks, out, prop43.CLAIM_CHECKS)
display(Markdown(md))

# %% [markdown]
# ## Section 4 on deep linear networks: iterative rank reduction vs one-shot truncation
#
# Same final rank for every method; `rank-r optimum` is reduced-rank regression (no rank-r matrix does better).

# %%
demo = deep_linear_rank_reduction(random_states=demo_random_states, lam=demo_lam)
columns = ["random_state", "rank", "teacher_rank", "loss_full", "loss_iterative", "loss_oneshot_product",
           "loss_oneshot_layers", "loss_optimal", "iterations_iterative", "final_step_iterative"]
demo_rows = [{k: (f"{r[k]:.5g}" if isinstance(r[k], float) else r[k]) for k in columns} for r in demo["runs"]]
_, _, md = write_table(demo_rows, out, prop43.DEEP_LINEAR)
display(Markdown(md))
summary_rows = [{"quantity": k, "value": (f"{v:.5g}" if isinstance(v, float) else v)} for k, v in demo["summary"].items()]
_, _, md = write_table(summary_rows, out, prop43.DEEP_LINEAR_SUMMARY)
display(Markdown(md))
print(save_figure(plot_rank_reduction(demo), out, prop43.RANK_REDUCTION))
