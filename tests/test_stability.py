"""study.stability: the decision a verdict states, and verdicts recomputed from re-made runs."""
from pathlib import Path

import pytest

from study.stability import compare, decision

from .helpers import write_synthetic_runs


@pytest.mark.parametrize("text, want", [
    ("not reproduced", "not reproduced"), ("reproduced", "reproduced"),
    ("inconclusive (interval contains 0: …)", "inconclusive"), ("no runs", "no runs")])
def test_decision(text: str, want: str) -> None:
    assert decision(text) == want


def test_runs_re_made_identically_change_no_verdict(tmp_path: Path) -> None:
    runs = write_synthetic_runs(tmp_path / "runs")
    rows = compare(runs, runs=str(runs), evidence=str(tmp_path / "none"), reports=str(tmp_path / "reports"))
    assert rows and all(r["same"] == "yes" and r["as made"] == r["re-made"] for r in rows)
    assert any(r["as made"] == "reproduced" for r in rows)   # the synthetic runs decide some claims
