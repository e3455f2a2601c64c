"""The extended parameter set's committed evidence (study/evidence.py), read back by study.runs, and the
split of dvc.yaml into the core set (`make repro`) and the extended one."""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

from study import evidence
from study.pipeline import CORE
from study.runs import load_points, load_runs
from tests.helpers import oneshot_run

ROOT = Path(__file__).resolve().parents[1]


def test_collect_copies_numbers_not_weights_and_replaces_the_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        oneshot_run(runs / "fig2" / "digits_k0" / name, "svd", 4)
        (runs / "fig2" / "digits_k0" / name / "model.pt").write_bytes(b"weights")
    (runs / "fig2" / "digits_k0" / "unfinished").mkdir()              # no metrics.json: not a run
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "m.py").write_text("x = 1\n")
    out = tmp_path / "reports" / "evidence"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older collection")
    m = evidence.collect(runs, out, ["runs/fig2/digits_k0"], command="cmd", library=lib)
    assert m["runs_per_folder"] == {"runs/fig2/digits_k0": 2}
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    kept = [f for f in sorted(evidence.FILES) if (runs / "fig2" / "digits_k0" / "a" / f).is_file()]
    assert "metrics.json" in kept and "model.pt" not in kept
    assert copied == [evidence.MANIFEST] + [f"runs/fig2/digits_k0/{n}/{f}" for n in ("a", "b") for f in kept]
    assert json.loads((out / evidence.MANIFEST).read_text())["library_sha256"] == evidence.library_hash(lib)
    assert not list(tmp_path.joinpath("reports").glob(".evidence-*"))    # no temporary folder left behind


def test_collect_refuses_a_folder_without_runs(tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    with pytest.raises(FileNotFoundError, match="no finished run"):
        evidence.collect(tmp_path / "runs", out, ["runs/fig3"], command="cmd", library=tmp_path)
    assert not out.exists()


def test_manifest_text_says_whether_the_library_is_this_checkouts(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "m.py").write_text("x = 1\n")
    runs = tmp_path / "runs"
    oneshot_run(runs / "fig3" / "svd_r64", "svd", 4)
    out = tmp_path / "evidence"
    evidence.collect(runs, out, ["runs/fig3/svd_r64"], command="cmd", library=lib)
    tb = tmp_path / "tb"
    tb.mkdir()
    (tb / "t.py").write_text("y = 1\n")
    evidence.collect(runs, out, ["runs/fig3/svd_r64"], command="cmd", library=lib, tenbcd=tb)
    assert "the sources this checkout holds (same `lowrank` and `tenbcd` source hash)" in \
        evidence.manifest_text(out, library=lib, tenbcd=tb)
    (tb / "t.py").write_text("y = 2\n")
    assert "different `tenbcd` source" in evidence.manifest_text(out, library=lib, tenbcd=tb)
    (lib / "m.py").write_text("x = 2\n")
    assert "different `lowrank` and `tenbcd` source" in evidence.manifest_text(out, library=lib, tenbcd=tb)
    # a manifest from before the tenBCD study joined the extended set: only the library's hash is compared
    m = json.loads((out / evidence.MANIFEST).read_text())
    del m["tenbcd_sha256"]
    m["library_sha256"] = evidence.library_hash(lib)
    (out / evidence.MANIFEST).write_text(json.dumps(m))
    assert "same `lowrank` source hash" in evidence.manifest_text(out, library=lib, tenbcd=tb)
    assert evidence.manifest_text(tmp_path / "none") == ""


def test_runs_are_read_from_the_checkout_first_then_from_the_evidence(tmp_path: Path) -> None:
    fresh, committed = tmp_path / "runs", tmp_path / "evidence"
    oneshot_run(fresh / "fig2" / "digits_k0" / "svd_r4", "svd", 4, scale=0.5)
    oneshot_run(committed / "fig2" / "digits_k0" / "svd_r4", "svd", 4, scale=0.9)   # hidden by the fresh run
    oneshot_run(committed / "fig2" / "digits_k0" / "svd_r8", "svd", 8)
    both = load_runs((fresh, committed), "fig2")
    assert list(both["run"]) == ["digits_k0/svd_r4", "digits_k0/svd_r8"]
    assert list(both["evidence"]) == [False, True]
    alone = load_runs(fresh, "fig2")
    assert both.iloc[0]["accuracy"] == alone.iloc[0]["accuracy"]
    # the points follow the rows' folders
    pts = load_points((fresh, committed), "fig2", both)
    assert set(pts["run"]) == {"digits_k0/svd_r4", "digits_k0/svd_r8"}
    assert list(load_runs(committed, "fig2")["evidence"]) == [False, False]        # first folder: not evidence
    with pytest.raises(ValueError, match="no folder"):
        load_runs(("",), "fig2")


# ------------------------------------------------------------------ dvc.yaml's split into parameter sets
@functools.lru_cache(maxsize=None)
def _stages() -> list[tuple[str, str, list[str], list[tuple[str, bool]]]]:
    """(name, set, deps, [(out, cached)]) of every stage of dvc.yaml, as DVC resolves it."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [(s.addressing, str((s.meta or {}).get("set", CORE)), [d.def_path for d in s.deps],
                 [(o.def_path, bool(o.use_cache)) for o in s.outs]) for s in repo.index.stages]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def test_only_core_and_extended_sets_exist() -> None:
    assert {s for _, s, _, _ in _stages()} == {CORE, evidence.EXTENDED}


def test_the_evidence_stage_depends_on_every_extended_run_folder() -> None:
    folders = evidence.extended_run_folders(ROOT)
    (deps,) = [d for n, _, d, _ in _stages() if n == "evidence"]
    run_deps = [d for d in deps if d.startswith("runs/")]
    assert folders and all(any(_under(f, d) for d in run_deps) for f in folders)
    assert all(any(_under(f, d) for f in folders) for d in run_deps)       # and on nothing else under runs/


def test_a_core_stage_never_needs_an_extended_stages_uncommitted_output() -> None:
    """In a fresh clone the extended stages' cached outputs (weights, run folders) do not exist; a core
    stage may read only their committed (cache: false) outputs, or a folder that core stages also fill."""
    stages = _stages()
    extended_cached = [o for _, s, _, outs in stages if s != CORE for o, cached in outs if cached]
    core_outs = [o for _, s, _, outs in stages if s == CORE for o, _ in outs]
    bad = []
    for name, s, deps, _ in stages:
        if s != CORE:
            continue
        for d in deps:
            inside = any(_under(d, o) for o in extended_cached)
            holds = any(_under(o, d) for o in extended_cached)
            if inside or (holds and not any(_under(o, d) or _under(d, o) for o in core_outs)):
                bad.append((name, d))
    assert bad == []


def test_every_stage_on_an_mnist1d_base_caches_its_arrays_outside_the_corpus_folder() -> None:
    """MNIST-1D is generated once and cached; in ``cache/text`` (the CLI's default) the arrays would change
    the corpus stage's output, so the text chain would re-run on the next ``dvc repro``."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        cmds = {s.addressing: str(s.cmd) for s in repo.index.stages}
    on_mnist1d = {n: c for n, c in cmds.items() if "@mnist1d" in n and "python -m lowrank" in c}
    assert {n.split("@")[0] for n in on_mnist1d} >= {"pretrain", "repeats", "table1", "fig2", "fig4", "fig5"}
    # `lowrank run` / `sweep` default to cache/text (`python -m tenbcd` to the user's cache, outside the
    # repository, and it is not a `python -m lowrank` command)
    writes_corpus = [n for n, c in on_mnist1d.items() if "--cache-dir cache/data" not in c]
    assert writes_corpus == []


def test_add_folders_adds_one_sweep_with_its_own_provenance_and_keeps_the_rest(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "m.py").write_text("x = 1\n")
    runs = tmp_path / "runs"
    oneshot_run(runs / "fig2" / "digits_k0" / "a", "svd", 4)
    out = tmp_path / "evidence"
    evidence.collect(runs, out, ["runs/fig2/digits_k0"], command="first", library=lib)
    (lib / "m.py").write_text("x = 2\n")                          # the added sweep comes from another library
    for name in ("p", "q"):
        oneshot_run(runs / "regime" / "digits_k0" / name, "svd", 4)
        (runs / "regime" / "digits_k0" / name / "model.pt").write_bytes(b"weights")
    m = evidence.add_folders(runs, out, ["runs/regime"], command="second", library=lib)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("metrics.json"))
    assert files == ["runs/fig2/digits_k0/a/metrics.json", "runs/regime/digits_k0/p/metrics.json",
                     "runs/regime/digits_k0/q/metrics.json"]
    assert not list(out.rglob("model.pt"))
    assert m["made_by"] == "first" and m["runs_per_folder"] == {"runs/fig2/digits_k0": 1}
    assert m["added"]["runs/regime"]["runs"] == 2 and m["added"]["runs/regime"]["made_by"] == "second"
    assert json.loads((out / evidence.MANIFEST).read_text()) == m
    text = evidence.manifest_text(out, library=lib)
    assert "different `lowrank` source" in text                    # the first collection's library is not this one
    assert ("The runs of `runs/regime` (2) were added later by `second`" in text
            and "this checkout's `lowrank` source" in text)
    # adding again replaces that sweep whole; a folder without runs is refused and changes nothing
    shutil.rmtree(runs / "regime" / "digits_k0" / "q")
    evidence.add_folders(runs, out, ["runs/regime"], command="third", library=lib)
    assert not (out / "runs" / "regime" / "digits_k0" / "q").exists()
    with pytest.raises(FileNotFoundError, match="no finished run"):
        evidence.add_folders(runs, out, ["runs/fig5"], command="x", library=lib)
    assert (out / "runs" / "fig2" / "digits_k0" / "a" / "metrics.json").is_file()
    assert not list(tmp_path.glob(".evidence-*"))
