"""Typed run configs: every run of the pipeline validates to the same spec it validated to before the configs
were typed (a committed snapshot), keyed by the run's output folder so it survives a reshaped params.yaml.

Regenerate the snapshot (only when a change of the resolved values is intended, and say so in the commit)::

    python -m tests.test_configs
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from lowrank.config import PROFILES, load_params, resolve_group, resolve_spec

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).with_name("snapshots") / "validated_specs.json"
# a run stage's command: `python -m lowrank run|sweep params:<ref> --out <folder>`
_RUN_CMD = re.compile(r"python -m lowrank (run|sweep) params:(\S+) --out (\S+)")


def pipeline_runs(params: dict[str, Any], profile: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(output folder, resolved spec) of every run a ``dvc.yaml`` stage makes: ``run`` stages one spec,
    ``sweep`` stages one per run of the group (``<out>/<run name>``), ``foreach`` expanded over its keys."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        body, keys = (stage["do"], list(params[stage["foreach"][2:-1]])) if "foreach" in stage else (stage, [None])
        for key in keys:
            cmd = body.get("cmd") if isinstance(body.get("cmd"), str) else ""
            m = _RUN_CMD.search(cmd.replace("${key}", str(key)))
            if m is None:
                continue
            verb, ref, out = m.groups()
            if verb == "run":
                yield out, resolve_spec(params, ref, profile)
            else:
                for name, spec in resolve_group(params, ref, profile).items():
                    yield f"{out}/{name}", spec


def validated_specs(params_path: str | Path = REPO / "params.yaml") -> dict[str, Any]:
    """``profile:folder`` → what the run validates to (:func:`lowrank.experiment.validate_spec`, its ``base``
    kept as written: the file exists only after its stage ran) and what its method is built with (the
    ``cfg`` it receives and its keys with defaults filled in), as JSON values."""
    from lowrank.experiment import validate_spec
    from lowrank.methods import METHODS, build_method

    params = load_params(params_path)
    out: dict[str, Any] = {}
    for profile in PROFILES:
        for folder, spec in pipeline_runs(params, profile):
            s = validate_spec({**spec, "base": None})
            s["base"] = spec.get("base")
            method = build_method(s["method"], dict(s["method_args"]))
            resolved = {**METHODS[s["method"]].keys_for(s["method"]), **s["method_args"]}
            out[f"{profile}:{folder}"] = {"spec": s, "method_cfg": method.cfg, "method_resolved": resolved}
    return json.loads(json.dumps(out, sort_keys=True))


def test_every_pipeline_run_validates_to_its_snapshot():
    """The validated specs of params.yaml, both profiles, equal the committed snapshot (made before the configs
    were typed): the same keys, values and JSON types (``1`` is not ``1.0``)."""
    want = json.loads(SNAPSHOT.read_text())
    got = validated_specs()
    assert sorted(got) == sorted(want)
    changed = sorted(k for k in want if got[k] != want[k])
    assert not changed, f"{len(changed)} runs validate differently, first {changed[0]}: {got[changed[0]]} != " \
                        f"{want[changed[0]]}"


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(exist_ok=True)
    runs = validated_specs()   # one run a line: a change shows as the lines of the runs it changed
    SNAPSHOT.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in
                                           sorted(runs.items())) + "\n}\n")
    print(f"wrote {SNAPSHOT.relative_to(REPO)}")
