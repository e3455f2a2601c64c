"""Proposition 4.3 of the paper (proof in its Appendix A.1; the OIALR bound of Appendix B.1.1), checked
numerically on toy problems, and its claim (f): one verdict per row of the claim table.

The algorithms, the claims as predicates and the figures live in :mod:`theory`; notebook
``notebooks/06_theory.py`` runs them and writes everything into ``reports/theory/`` (figures and tables
side by side); REPORT.md reads its claim table back.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .registry import Artifact, Inputs, register
from .verdicts import Verdict

__all__ = ["NOTEBOOK", "OUT", "OBJECTIVE", "PATH_LENGTH", "RUN_LABELS", "singular_values_stem", "RANK_REDUCTION",
           "CLAIMS", "CLAIM_CHECKS", "CORRECTED", "DEEP_LINEAR", "DEEP_LINEAR_SUMMARY", "verdict_theory", "ARTIFACT"]

NOTEBOOK = "06_theory"
OUT = "theory"                        # the folder of every output, under reports/
OBJECTIVE, PATH_LENGTH = "objective", "path_length"                  # figures
#: the runs of theory.experiment.proposition_runs: one figure of singular values each
RUN_LABELS = ("Euclidean", "Fisher")
RANK_REDUCTION = "deep_linear_rank_reduction"                        # figure
CLAIMS, CLAIM_CHECKS = "claims", "claim_checks"                      # tables
DEEP_LINEAR, DEEP_LINEAR_SUMMARY = "deep_linear", "deep_linear_summary"
#: the verdict of a statement whose printed form has a counterexample and whose corrected form holds
CORRECTED = "printed form fails; corrected form holds"


def singular_values_stem(label: str) -> str:
    """The figure of the singular values of the run ``label`` (one of :data:`RUN_LABELS`)."""
    return f"singular_values_{label.lower()}"


def verdict_theory(claims: pd.DataFrame) -> list[Verdict]:
    """Claim (f): one verdict per row of the theory notebook's claim table (``reports/theory/claims.csv``):
    ``holds`` → reproduced; ``fails (counterexample); corrected form holds`` → :data:`CORRECTED` (a defect
    of the printed statement — a boundary case or a constant — not an experimental non-reproduction);
    any other ``fails`` → not reproduced; each with the counterexample and the corrected form."""
    statement = "(f) Proposition 4.3 / Appendix B.1.1 as printed"
    if claims is None or claims.empty:
        return [Verdict("(f)", statement, "Proposition 4.3", "no runs",
                        "reports/theory/claims.csv not found (run notebooks/06_theory.py)")]
    out = []
    for _, r in claims.iterrows():
        v = str(r.get("verdict", ""))
        verdict = ("reproduced" if v.startswith("holds") else
                   CORRECTED if v.startswith("fails") and v.endswith("corrected form holds") else
                   "not reproduced" if v.startswith("fails") else f"inconclusive ({v})")
        ev = (f"printed form on our runs: {r.get('printed, on these runs', '')}; counterexample: "
              f"{r.get('counterexample', '')}; corrected form: {r.get('corrected form', '')}; theory table: {v}")
        out.append(Verdict(f"(f) {str(r.get('claim', '')).split(' ')[0].rstrip('.')}", f"(f) {r.get('claim', '')}",
                           "Proposition 4.3 (Appendix A.1) / Appendix B.1.1", verdict, ev))
    return out


def verdicts(inputs: Inputs) -> list[Verdict]:
    claims_path = inputs.reports_dir / OUT / f"{CLAIMS}.csv"
    return verdict_theory(pd.read_csv(claims_path) if claims_path.is_file() else pd.DataFrame())


def section(reports_dir: Path) -> list[str]:
    claims_md = reports_dir / OUT / f"{CLAIMS}.md"
    return [
        "## (f) Proposition 4.3: the theory notebook's claim table",
        "",
        claims_md.read_text().rstrip() + "\n" if claims_md.is_file()
        else f"_(`{OUT}/{CLAIMS}.md` not generated yet: run `notebooks/{NOTEBOOK}.py`)_\n",
    ]


ARTIFACT = register(Artifact(
    "prop43", "Proposition 4.3", "theory", notebook=NOTEBOOK,
    figures=(OBJECTIVE, PATH_LENGTH, *map(singular_values_stem, RUN_LABELS), RANK_REDUCTION),
    tables=(CLAIMS, CLAIM_CHECKS, DEEP_LINEAR, DEEP_LINEAR_SUMMARY), figures_dir=OUT, tables_dir=OUT,
    claims=("(f)",), verdicts=verdicts, section=section))
