"""No comparison mixes runs made from different files of a base (study.runs.same_base_files)."""
import numpy as np
import pandas as pd

from study.runs import same_base_files


def _runs(*rows: tuple[str, object]) -> pd.DataFrame:
    return pd.DataFrame([{"run": r, "base_sha256": h} for r, h in rows])


def test_only_rows_made_from_a_base_file_the_others_used_are_kept() -> None:
    like = _runs(("digits_k0/oialr", "a"), ("digits_k1/oialr", np.nan))
    frame = _runs(("digits_k0/ieht", "a"), ("digits_k0/ifht", "b"), ("digits_k1/ieht", np.nan),
                  ("digits_k1/ifht", "c"), ("digits_k2/ieht", "a"))
    kept, notes = same_base_files(frame, like, "runs of x", "dvc repro x@{base}")
    # same folder and same (or no) hash; digits_k2: like has no runs there, nothing to mix with
    assert list(kept["run"]) == ["digits_k0/ieht", "digits_k1/ieht", "digits_k2/ieht"]
    assert len(notes) == 2 and all("left out; re-make them with `dvc repro x@digits_k" in n for n in notes)
    assert any(n.startswith("1 runs of x on digits_k0") for n in notes)


def test_nothing_to_compare_with_leaves_the_rows_alone() -> None:
    frame = _runs(("digits_k0/ieht", "a"))
    assert same_base_files(frame, frame.iloc[0:0])[0].equals(frame)
    # runs that recorded no hash (made before hashes were recorded) are another file than a hashed one
    assert len(same_base_files(frame, pd.DataFrame({"run": ["digits_k0/x"]}))[1]) == 1
