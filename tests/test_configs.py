"""Typed run configs: every run of the pipeline validates to the same spec it validated to before the configs
were typed (a committed snapshot), keyed by the run's output folder so it survives a reshaped params.yaml.

Regenerate the snapshot (only when a change of the resolved values is intended, and say so in the commit)::

    python -m tests.test_configs
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterator, Literal, Mapping

import pytest
import yaml

from lowrank.api import CompressArguments
from lowrank.config import PROFILES, load_params, resolve_group, resolve_spec
from lowrank.configs import Config, Fraction, Interval, PositiveInt, setting
from lowrank.experiment import RunSpec
from lowrank.methods import METHODS, build_method
from lowrank.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).with_name("snapshots") / "validated_specs.json"
# a run stage's command: `python -m lowrank run|sweep params:<ref> --out <folder>`
_RUN_CMD = re.compile(r"python -m lowrank (run|sweep) params:(\S+) --out (\S+)")


def pipeline_runs(params: dict[str, Any], profile: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(output folder, resolved spec) of every run a ``dvc.yaml`` stage makes: ``run`` stages one spec,
    ``sweep`` stages one per run of the group (``<out>/<run name>``), ``foreach`` expanded over its keys."""
    from study.notebook import foreach_items

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        body, items = (stage["do"], foreach_items(stage["foreach"], REPO)) if "foreach" in stage else (stage, {"": {}})
        for key, item in items.items():
            cmd = body.get("cmd") if isinstance(body.get("cmd"), str) else ""
            fields = item if isinstance(item, dict) else {}
            cmd = re.sub(r"\$\{item\.(\w+)\}", lambda m: str(fields[m.group(1)]), cmd.replace("${key}", key))
            m = _RUN_CMD.search(cmd)
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
    # compared as JSON text: 1 == 1.0 in Python, but not in a run's identity (a hash of the spec's JSON)
    changed = sorted(k for k in want if json.dumps(got[k], sort_keys=True) != json.dumps(want[k], sort_keys=True))
    assert not changed, f"{len(changed)} runs validate differently, first {changed[0]}: {got[changed[0]]} != " \
                        f"{want[changed[0]]}"
    # the typed config a method reads holds the snapshot's values of every key it uses
    for run in want.values():
        name, args = run["spec"]["method"], run["spec"]["method_args"]
        typed = json.loads(json.dumps(build_method(name, args).config.to_dict()))
        assert json.dumps({k: typed[k] for k in run["method_resolved"]}, sort_keys=True) == \
            json.dumps(run["method_resolved"], sort_keys=True)


# ------------------------------------------------------------------------------------------ the type rules
@dataclasses.dataclass(frozen=True)
class _Example(Config):
    count: PositiveInt = setting(1, "a positive int")
    share: Fraction = setting(0.5, "(0, 1]")
    rate: Annotated[float, Interval(low=0, low_open=True, finite=True)] = setting(1.0, "finite, > 0")
    tol: Annotated[float, Interval(0, 1, high_open=True)] | None = setting(None, "[0, 1) or null")
    kind: Literal["step", "epoch"] = setting("step", "a choice")
    args: Mapping[str, Any] = setting({}, "a mapping")
    flag: bool = setting(False, "a bool")

    label: ClassVar[str] = "example {who}"


# (key, value, admitted): the rule each annotation states, written out independently of the validator
_CASES = [
    ("count", 1, True), ("count", 10**12, True), ("count", 0, False), ("count", -3, False), ("count", True, False),
    ("count", 1.0, False), ("count", "1", False), ("count", None, False),
    ("share", 1, True), ("share", 1.0, True), ("share", 1e-300, True), ("share", 0, False), ("share", 0.0, False),
    ("share", 1 + 2 ** -52, False), ("share", math.nan, False), ("share", True, False), ("share", "0.5", False),
    ("rate", 1e-300, True), ("rate", 3, True), ("rate", 0.0, False), ("rate", math.inf, False),
    ("rate", math.nan, False),
    ("tol", None, True), ("tol", 0, True), ("tol", 0.999, True), ("tol", 1.0, False), ("tol", -0.0, True),
    ("tol", -1e-12, False),
    ("kind", "step", True), ("kind", "epoch", True), ("kind", "Step", False), ("kind", None, False),
    ("args", {}, True), ("args", {"a": 1}, True), ("args", [], False), ("args", None, False),
    ("flag", True, True), ("flag", 0, False), ("flag", "yes", False),
]


@pytest.mark.parametrize("key,value,admitted", _CASES)
def test_a_field_admits_exactly_what_its_type_states(key, value, admitted):
    if admitted:
        assert getattr(_Example.from_mapping({key: value}, who="x"), key) is value    # kept as given, not converted
        return
    with pytest.raises(ValueError) as err:
        _Example.from_mapping({key: value}, who="x")
    msg = str(err.value)
    assert msg.startswith(f"{key}={value!r}") and "\n" not in msg     # one line: the key and the value first


def test_messages_say_what_is_allowed():
    def refusal(**kw):
        with pytest.raises(ValueError) as err:
            _Example.from_mapping(kw, who="x")
        return str(err.value)

    assert refusal(count=0) == "count=0 must be a positive int"
    assert refusal(share=2) == "share=2 is outside the allowed range (0, 1]"
    assert refusal(tol=1.0) == "tol=1.0 is outside the allowed range [0, 1) or null"
    assert refusal(rate=math.inf) == "rate=inf must be a finite number > 0"
    assert refusal(kind="batch") == "kind='batch'; allowed: step, epoch"
    assert refusal(args=[1]) == "args=[1] must be a mapping"
    assert refusal(flag=1) == "flag=1 must be true or false"
    assert refusal(cuont=2, zz=1) == ("example x: unknown keys ['cuont', 'zz']; allowed: ['args', 'count', 'flag', "
                                      "'kind', 'rate', 'share', 'tol']")


def _configs():
    methods = sorted({cls.config_class for cls in METHODS.values()}, key=lambda c: c.__name__)  # a fixed order
    return [TrainConfig, RunSpec, CompressArguments, *methods]


@pytest.mark.parametrize("config", _configs(), ids=lambda c: c.__name__)
def test_every_key_has_help_and_a_default_its_type_admits(config):
    """A key without a usable default is one that must be given (its default ``None`` is refused by its type)."""
    must_give = {"tt_rank"}
    for key, text in config.help().items():
        assert text.strip(), f"{config.__name__}.{key} has no help"
    for key, value in config.defaults().items():
        if key in must_give:
            with pytest.raises(ValueError, match=f"{key}=None must be"):
                config.check_value(key, value)
        else:
            config.check_value(key, value)


def test_a_method_reads_its_typed_config_and_keeps_the_cfg_it_was_given():
    m = build_method("ifht", {"oialr_threshold": 0.9, "fisher_samples": 8})
    assert m.cfg == {"oialr_threshold": 0.9, "fisher_samples": 8}
    assert m.config.oialr_threshold == 0.9 and m.config.fisher_samples == 8 and m.config.delay == 1
    assert m.beta == 0.9 and m.fisher_samples == 8
    assert build_method("oialr", {}).beta == 0.1 and build_method("global_ieht", {}).beta == 0.95
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.config.delay = 3


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(exist_ok=True)
    runs = validated_specs()   # one run a line: a change shows as the lines of the runs it changed
    SNAPSHOT.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in
                                           sorted(runs.items())) + "\n}\n")
    print(f"wrote {SNAPSHOT.relative_to(REPO)}")
