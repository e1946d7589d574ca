"""Spec parsing, grid expansion and validation (in-process, no compiles)."""

import pytest

from profiler.spec import Point, SpecError, build_spec, load_spec, parse_override
from tests.messages import says


def test_lists_are_axes_and_scalars_are_fixed():
    spec = build_spec({"name": "t", "mode": ["loop", "scan"], "layers": [2, 4, 8], "hidden": 64})
    assert len(spec.points) == 6
    assert {p.mode for p in spec.points} == {"loop", "scan"}
    assert {p.layers for p in spec.points} == {2, 4, 8}
    assert all(p.hidden == 64 for p in spec.points)


def test_point_id_is_stable_and_distinguishes_configurations():
    a, b = Point(layers=2), Point(layers=2)
    assert a.id == b.id
    assert Point(layers=3).id != a.id


def test_overrides_are_parsed_as_toml(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "t"\nlayers = 2\n')
    spec = load_spec(path, ["layers=[2,4]", "mode=loop", 'dtype="bfloat16"'])
    assert [p.layers for p in spec.points] == [2, 4]
    assert {p.mode for p in spec.points} == {"loop"}
    assert {p.dtype for p in spec.points} == {"bfloat16"}


def test_shipped_specs_are_valid():
    assert len(load_spec("sweeps/default.toml").points) == 30
    assert {(p.layers, p.hidden) for p in load_spec("sweeps/seed.toml").points} == {(42, 512)}


BAD = [
    ({"lyers": 2}, ("'lyers'", "'layers'")),
    ({"layers": "2"}, "key 'layers'"),
    ({"layers": 0}, "key 'layers'"),
    ({"hidden": 66, "heads": 4}, ("key 'hidden'", "66", "heads=4")),
    ({"mode": "unrolled"}, "key 'mode'"),
    ({"workload": "inference"}, "key 'workload'"),
    ({"layers": []}, ("key 'layers'", "empty")),
    ({"repeats": 0}, "key 'repeats'"),
    ({"repeats": [1, 2]}, ("key 'repeats'", "sweep setting")),
    ({"dtype": "float8"}, "key 'dtype'"),
    ({"mode": "loop", "unroll": 2}, "key 'unroll'"),
    ({"remat": "sometimes"}, ("key 'remat'", "'sometimes'")),
    ({"run": "yes"}, "key 'run'"),
    ({"layers": {"a": 1}}, ("key 'layers'", "table")),
]


@pytest.mark.parametrize(("table", "message"), BAD, ids=[str(list(t)[0]) + "-" + str(i) for i, (t, _) in enumerate(BAD)])
def test_bad_input_is_one_line_naming_the_key(table, message):
    with pytest.raises(SpecError) as info:
        build_spec({"name": "t", **table})
    assert says(str(info.value), message)


def test_missing_name_is_reported():
    with pytest.raises(SpecError, match="key 'name': is required"):
        build_spec({"layers": 2})


def test_toml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "t"\nlayers = [2, 4\nhidden = 64\n')
    with pytest.raises(SpecError, match=r"TOML syntax error.*line 3"):
        load_spec(path)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.toml")


@pytest.mark.parametrize("text", ["layers", "=3", "layers=[1,"])
def test_bad_override(text):
    with pytest.raises(SpecError, match="override"):
        parse_override(text)


def test_every_point_key_is_a_model_key_of_some_workload_or_always_applies():
    """A new key must say which workloads read it (WORKLOAD_KEYS), or its column would be
    null everywhere."""
    from profiler.spec import MODEL_KEYS, POINT_KEYS, RUN_KEYS, WORKLOAD_KEYS, family_keys

    read = {key for keys in WORKLOAD_KEYS.values() for key in keys} | set(family_keys("moe", "train"))
    assert set(MODEL_KEYS) - {"program"} == read - {"program"}
    assert set(POINT_KEYS) == read | set(RUN_KEYS) | {"workload", "program"}


def test_the_workloads_are_the_same_three_times():
    """The values of key `workload`, the keys each reads and the functions that build them
    are written in three places (the Literal for the schema and docs/keys.md, WORKLOAD_KEYS,
    workloads.BUILDERS): a workload added to one only fails here."""
    import typing

    from profiler.spec import WORKLOAD_KEYS
    from profiler.workloads import BUILDERS

    named = typing.get_args(Point.model_fields["workload"].annotation)
    assert sorted(named) == sorted(WORKLOAD_KEYS) == sorted(BUILDERS)


def test_a_point_describes_only_the_keys_its_workload_reads():
    decode = Point(workload="decode", layers=2, hidden=32, heads=4, kv_heads=2, max_len=32).config()
    assert decode["kv_heads"] == 2 and decode["layers"] == 2 and decode["steps"] == 5
    assert not {"seq", "remat", "api", "block", "program"} & set(decode)
    forward = Point(layers=2).config()
    assert forward["seq"] == 32 and not {"kv_cache", "vocab", "prompt_len"} & set(forward)


def test_a_factory_parameter_named_like_a_run_key_is_refused(monkeypatch, tmp_path):
    (tmp_path / "factories.py").write_text(
        "def power_iteration(hidden=64, batch=8, steps=10):\n    return (lambda x: x), ()\n"
        "def timed(hidden, repeats=3):\n    return (lambda x: x), ()\n"
        "def unsized(hidden=None):\n    return (lambda x: x), ()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # A default the key cannot hold is named too: the spec must set the key.
    for factory, key in (("power_iteration", "steps"), ("timed", "repeats"), ("unsized", "hidden")):
        with pytest.raises(SpecError) as info:
            build_spec({"name": "t", "program": f"factories:{factory}"})
        assert str(info.value).startswith("key 'program':") and f"'{key}'" in str(info.value)
        assert "\n" not in str(info.value)
