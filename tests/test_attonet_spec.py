import dataclasses
import re

import pytest

from atto_detectron import (
    ATTONET_VARIANTS,
    AttoNetSpec,
    build_attonet_classifier,
    get_attonet_spec,
    load_attonet_spec,
    save_attonet_spec,
)
from atto_detectron.modeling.attonet_spec import STAGE_NAMES


@pytest.mark.parametrize("variant", list(ATTONET_VARIANTS))
def test_table1_cells_follow_the_prototype(variant):
    spec = ATTONET_VARIANTS[variant]
    assert [len(stage) for stage in spec.stages] == [3, 4, 6, 3]
    assert len(spec.modules) == 16
    for i, stage in enumerate(spec.stages):
        for j, m in enumerate(stage):
            assert m.depthwise == m.multiplier * m.compression
            assert m.stride == (2 if j == 0 and i > 0 else 1)
            # Module 1 and the downsampling modules 4, 8, 14 project; the rest are identity.
            assert m.shortcut == ("projection" if j == 0 else "identity")
            assert len({x.out_channels for x in stage}) == 1


def test_spec_cells_of_table1():
    # A few cells read off Table 1 (the rest are checked through the parameter counts).
    a, d = ATTONET_VARIANTS["A"], ATTONET_VARIANTS["D"]
    assert a.stem_channels == 8 and d.stem_channels == 3
    assert dataclasses.astuple(a.stages[3][0])[:5] == (160, 4, 640, 128, 952)
    assert dataclasses.astuple(d.stages[0][2])[:5] == (7, 4, 28, 6, 112)
    assert ATTONET_VARIANTS["C"].stages[0][0].multiplier == 2


@pytest.mark.parametrize("name", ["A", "a", "attonet-a", "AttoNet-A", "ATTONET_A", " AttoNet-a "])
def test_variant_names_are_case_insensitive(name):
    assert get_attonet_spec(name) is ATTONET_VARIANTS["A"]


@pytest.mark.parametrize("name", ["E", "attonet-e", "resnet50", "", "AttoNet", None, 3])
def test_unknown_variant_lists_valid_names(name):
    with pytest.raises(ValueError) as e:
        get_attonet_spec(name)
    message = str(e.value)
    assert repr(name) in message
    for valid in "ABCD":
        assert f"'{valid}'" in message


@pytest.mark.parametrize("variant", list(ATTONET_VARIANTS))
def test_spec_dict_round_trip(variant):
    spec = ATTONET_VARIANTS[variant]
    data = spec.to_dict()
    assert list(data["stages"]) == list(STAGE_NAMES)
    assert AttoNetSpec.from_dict(data) == spec


def _modified(field, value, stage=1, index=1):
    data = ATTONET_VARIANTS["B"].to_dict()
    data["stages"][STAGE_NAMES[stage]][index][field] = value
    return data


@pytest.mark.parametrize(
    "field,value,stage,index,expected",
    [
        ("depthwise", 65, 1, 1, "g must be M * c"),
        ("out_channels", 100, 1, 1, "identity shortcut"),
        ("stride", 1, 1, 0, "stride must be 2"),
        ("stride", 2, 1, 1, "stride must be 1"),
        ("shortcut", "dense", 1, 1, "shortcut must be one of"),
        ("mixing", 0, 2, 3, "mixing must be a positive integer"),
    ],
)
def test_malformed_spec_is_rejected_with_location(field, value, stage, index, expected):
    with pytest.raises(ValueError, match=re.escape(expected)) as e:
        AttoNetSpec.from_dict(_modified(field, value, stage, index))
    assert f"AttoNet-B {STAGE_NAMES[stage]}.{index}" in str(e.value)


def test_spec_dict_missing_keys():
    data = ATTONET_VARIANTS["A"].to_dict()
    del data["stages"]["res4"]
    with pytest.raises(ValueError, match="res4|Malformed"):
        AttoNetSpec.from_dict(data)


def _custom_spec():
    # AttoNet-D with a wider res2 mixing conv: a network that is none of Table 1's.
    data = ATTONET_VARIANTS["D"].to_dict()
    data["name"] = "AttoNet-custom"
    data["stages"]["res2"][0]["mixing"] = 24
    return AttoNetSpec.from_dict(data)


@pytest.mark.parametrize("extension", [".yaml", ".yml", ".json"])
def test_spec_file_round_trip(tmp_path, extension):
    spec = _custom_spec()
    path = save_attonet_spec(spec, str(tmp_path / f"net{extension}"))
    assert load_attonet_spec(path) == spec
    # Anywhere a variant name is taken, a spec file is too.
    assert get_attonet_spec(path) == spec
    classifier = build_attonet_classifier(path, num_classes=5)
    assert classifier.spec == spec
    assert classifier.backbone.stages["res2"][0].mixing.out_channels == 24


def test_spec_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        get_attonet_spec(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    data = _custom_spec().to_dict()
    data["stages"]["res3"][1]["depthwise"] = 7
    bad.write_text(__import__("yaml").safe_dump(data))
    with pytest.raises(ValueError, match=r"bad\.yaml.*g must be M \* c"):
        load_attonet_spec(str(bad))
    (tmp_path / "empty.yml").write_text("")
    with pytest.raises(ValueError, match="empty.yml"):
        load_attonet_spec(str(tmp_path / "empty.yml"))
    with pytest.raises(ValueError, match="must end in"):
        save_attonet_spec(_custom_spec(), str(tmp_path / "net.txt"))
