r"""Calibration text from the user's own files, for ``python -m lowrank compress --calibration PATH``.

>>> import pathlib, tempfile
>>> from lowrank.data import load_local_text
>>> corpus = pathlib.Path(tempfile.mkdtemp()) / "corpus.txt"
>>> _ = corpus.write_text("\n".join(f"sample {i}" for i in range(20)) + "\n\n")
>>> text = load_local_text(corpus)                              # one sample per non-empty line
>>> len(text.calibration), text.held_out                        # the last tenth is held out
(18, ['sample 18', 'sample 19'])
>>> text = load_local_text("my_dataset", column="sentence")     # doctest: +SKIP

(the last line: a folder written by ``datasets.save_to_disk``, not made here)

* a plain-text file (UTF-8): one sample per non-empty line, stripped of surrounding white space (a line is
  the unit most corpora dumps already use; a paragraph spread over lines becomes several samples);
* a folder written by ``datasets`` (``Dataset`` / ``DatasetDict.save_to_disk``, read with
  ``datasets.load_from_disk``): one sample per row of the text ``column`` (default: ``text`` if present,
  else the only string column); empty rows are skipped. A ``DatasetDict`` calibrates on its ``train``
  split (or its only split).

Held out (scored for perplexity, never used for calibration): a ``DatasetDict``'s ``validation`` split,
else its ``test`` split, else the last tenth of the samples (``n // 10``, in file / row order).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LocalText", "load_local_text", "HELD_OUT_SPLITS"]

HELD_OUT_SPLITS = ("validation", "test")


@dataclass(frozen=True)
class LocalText:
    """Samples to calibrate on, samples held out from calibration, and where each came from."""

    calibration: list[str]
    held_out: list[str]
    source: dict[str, Any] = field(default_factory=dict)


def _samples(rows: list[Any]) -> list[str]:
    return [s.strip() for s in rows if isinstance(s, str) and s.strip()]


def _tail_split(samples: list[str]) -> tuple[list[str], list[str]]:
    cut = len(samples) - len(samples) // 10
    return samples[:cut], samples[cut:]


def _text_column(ds: Any, column: str | None, where: str) -> str:
    strings = [k for k, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
    if column is not None:
        if column not in strings:
            raise ValueError(f"--calibration-column {column!r} is not a text column of {where}; its text columns: "
                             f"{strings}, all columns: {list(ds.features)}")
        return column
    if "text" in strings:
        return "text"
    if len(strings) == 1:
        return strings[0]
    raise ValueError(f"--calibration {where} has {'no text column' if not strings else 'several text columns'} "
                     f"(columns: {list(ds.features)}); allowed: name a string column with --calibration-column")


def load_local_text(path: str | os.PathLike, *, column: str | None = None) -> LocalText:
    """The samples of a text file or a ``datasets`` folder, split into calibration and held-out (module docstring).

    Raises ``ValueError`` (one line: the path or column, what is wrong, what is allowed) for a missing path, a
    file that is not UTF-8 text, no samples, or no text column.
    """
    p = Path(path)
    if p.is_file():
        if column is not None:
            raise ValueError(f"--calibration-column {column!r} applies to a datasets folder; {str(p)!r} is a text "
                             f"file (one sample per non-empty line)")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise ValueError(f"--calibration {str(p)!r} is not UTF-8 text ({err.reason} at byte {err.start}); "
                             f"allowed: a UTF-8 text file, one sample per line") from None
        samples = _samples(lines)
        if not samples:
            raise ValueError(f"--calibration {str(p)!r} has no text (no non-empty line); allowed: one sample per line")
        calib, held = _tail_split(samples)
        return LocalText(calib, held, {"kind": "text file", "path": str(p), "unit": "non-empty line",
                                       "samples": len(samples), "held_out": "the last tenth of the lines (n // 10)"})
    if not p.is_dir():
        raise ValueError(f"--calibration {str(p)!r}: no such file or folder")
    import datasets

    try:
        loaded = datasets.load_from_disk(str(p))
    except FileNotFoundError:
        raise ValueError(f"--calibration {str(p)!r} is a folder but not one written by datasets' save_to_disk; "
                         f"allowed: a text file, a save_to_disk folder, or a registry dataset name") from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        calib_split = "train" if "train" in loaded else names[0] if len(names) == 1 else None
        if calib_split is None:
            raise ValueError(f"--calibration {str(p)!r} has splits {names} and no 'train'; allowed: a 'train' "
                             f"split (calibration) with an optional {' / '.join(HELD_OUT_SPLITS)} (held out)")
        held_split = next((s for s in HELD_OUT_SPLITS if s in loaded and s != calib_split), None)
        train = loaded[calib_split]
        col = _text_column(train, column, f"{str(p)!r} split {calib_split!r}")
        calib = _samples(train[col])
        if held_split is not None:
            held = _samples(loaded[held_split][_text_column(loaded[held_split], col, f"{str(p)!r} split "
                                                                                      f"{held_split!r}")])
            rule = f"split {held_split!r}"
        else:
            calib, held = _tail_split(calib)
            rule = "the last tenth of the rows (n // 10)"
        source = {"kind": "datasets folder", "path": str(p), "column": col, "split": calib_split,
                  "samples": len(calib) + (len(held) if held_split is None else 0), "held_out": rule}
    else:
        col = _text_column(loaded, column, repr(str(p)))
        calib, held = _tail_split(_samples(loaded[col]))
        source = {"kind": "datasets folder", "path": str(p), "column": col, "samples": len(calib) + len(held),
                  "held_out": "the last tenth of the rows (n // 10)"}
    if not calib:
        raise ValueError(f"--calibration {str(p)!r} column {col!r} has no text (every row empty); allowed: a column "
                         f"of non-empty strings")
    return LocalText(calib, held, source)
