"""The study: from ``runs/`` to the paper's tables, figures and claim verdicts (``reports/``, REPORT.md).

Not the library (:mod:`lowrank` is what a user imports to compress a model, and never imports this
package); the repository's own reproduction of "On Information Geometry and Iterative Optimization in Model
Compression: Operator Factorization" (arXiv 2507.09428). One module per paper artifact, each registered in
:data:`ARTIFACTS` with its notebook, sweeps, output stems and verdicts:

=====================  ===============================================  ===============================
module                 artifact of the paper                            notebook
=====================  ===============================================  ===============================
``walkthrough``        Sections 3–4, Algorithms 1–2, live               ``00_walkthrough``
``table1``             Table 1, claim (a)                               ``01_table1_zero_shot``
``fig2``               Figure 2 (+ budget, repeats, ranks), (b), (c)    ``02_fig2_pareto``
``fig3``               Figure 3, claim (h)                              ``03_fig3_bert_glue``
``fig4``               Figure 4, claim (d)                              ``04_fig4_depth_schedules``
``fig5``               Figure 5, claim (e)                              ``05_fig5_global_vs_local``
``prop43``             Proposition 4.3, claim (f)                       ``06_theory``
``tenbcd``             the companion paper's tenBCD study, (g1)–(g3)    ``07_tenbcd``
``regime``             claim (b) in the paper's regime (Section 5.2)    ``08_regime``
=====================  ===============================================  ===============================

Shared machinery: ``runs`` (loading run folders), ``fronts`` (Pareto fronts), ``pareto`` (the Pareto
figure and tables of Figures 2–5), ``verdicts`` (noise level and decisions), ``intervals`` (95 %
intervals over seeds and the verdict they give), ``writers`` (figure and table
files), ``style`` (colours, axes), ``families`` (method families and order), ``registry``. ``report``
writes REPORT.md from the registry; ``pipeline`` is ``make repro``'s scheduler of the DVC stages.
"""
# importing an artifact module registers it; the registry orders them by notebook, not by this list
from . import fig2, fig3, fig4, fig5, prop43, regime, table1, tenbcd, walkthrough
from .registry import ARTIFACTS, Artifact, Inputs, artifacts

__all__ = ["ARTIFACTS", "Artifact", "Inputs", "artifacts", "walkthrough", "table1", "fig2", "fig3", "fig4",
           "fig5", "prop43", "tenbcd", "regime"]
