import pytest

from edgevision.config import FAMILY_DEFAULT_PROFILE, Recipe, _load_yaml, get_target, load_recipe, target_profiles
from edgevision.errors import BadInput


def test_every_profile_validates_and_family_names_resolve():
    profiles = target_profiles()
    assert {"cpu", "intel-core-ultra-npu"} <= set(profiles)
    for family, name in FAMILY_DEFAULT_PROFILE.items():
        assert name in profiles, f"the {family} family's default profile {name} is missing"
        assert get_target(family).name == name
        assert get_target(family).family == family


def test_unknown_target_names_the_choices():
    with pytest.raises(BadInput, match="unknown target 'tpu'.*cpu"):
        get_target("tpu")


def test_recipe_tolerances_merge_target_overrides():
    r = Recipe.model_validate({
        "model": "m", "primary_metric": "map50",
        "tolerances": {"int8": {"map50": {"max_drop": 1.0}, "agreement_map50": {"min": 95}}},
        "target_tolerances": {"rpi": {"int8": {"map50": {"max_drop": 2.0}}}},
    })
    assert r.tolerances_for("cpu", "int8")["map50"].max_drop == 1.0
    assert r.tolerances_for("rpi", "int8")["map50"].max_drop == 2.0
    assert r.tolerances_for("rpi", "int8")["agreement_map50"].min == 95


def test_shipped_recipes_have_the_default_int8_budgets():
    det = load_recipe("fast-yolo-demo", "detect").tolerances_for("cpu", "int8")
    assert (det["map50"].max_drop, det["map50_95"].max_drop, det["agreement_map50"].min) == (1.0, 1.5, 95.0)
    seg = load_recipe("mobile-unet", "segment").tolerances_for("intel-npu", "int8")
    assert seg["miou"].max_drop == 1.0
    # a model without its own recipe gets its task's default
    assert load_recipe("some-new-detector", "detect").model == "some-new-detector"


def test_nncf_preset_comes_from_the_target_unless_the_recipe_names_one():
    recipe = load_recipe("fast-yolo", "detect")
    assert recipe.quantization.preset_for(get_target("intel-npu")) == "performance"
    assert recipe.quantization.preset_for(get_target("cpu")) == "mixed"
    pinned = Recipe.model_validate({"model": "m", "primary_metric": "map50", "quantization": {"preset": "mixed"}})
    assert pinned.quantization.preset_for(get_target("intel-npu")) == "mixed"


def test_bad_yaml_names_the_file_and_field(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("model: x\nprimary_metric: map50\ntolerances: {int8: {map50: {max_drop: -1}}}\n")
    with pytest.raises(BadInput, match=r"broken.yaml: field 'tolerances.int8.map50.max_drop'"):
        _load_yaml(p, Recipe)
    p.write_text("model: [unclosed\n")
    with pytest.raises(BadInput, match="broken.yaml: cannot read YAML"):
        _load_yaml(p, Recipe)
    p.write_text("model: x\nprimary_metric: m\ntolerances: {int8: {map50: {max_drop: 1, min: 2}}}\n")
    with pytest.raises(BadInput, match="exactly one of max_drop or min"):
        _load_yaml(p, Recipe)


def test_calibration_method_per_target_family():
    r = Recipe(model="m", primary_metric="map50",
               quantization={"calibration_method": "minmax", "target_calibration_method": {"jetson": "entropy"}})
    assert r.quantization.method_for("jetson") == "entropy"
    assert r.quantization.method_for("rpi") == "minmax"
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        Recipe(model="m", primary_metric="map50", quantization={"calibration_method": "kl"})


def test_intel_npu_leaves_float_the_weighted_op_types_a_recipe_does_not_list():
    from edgevision.export.nncf_quantize import openvino_ignored_types

    def ignored(quantization):
        return openvino_ignored_types(Recipe.model_validate(
            {"model": "m", "primary_metric": "miou", "quantization": quantization}).quantization)

    assert ignored({}) == []  # no op_types: NNCF decides everything
    assert ignored({"op_types": ["MatMul", "Gemm", "Conv"], "ignored_types": ["Softmax"]}) == ["Softmax", "SoftMax"]
    assert ignored({"op_types": ["Gemm"]}) == ["Convolution", "GroupConvolution"]  # linears are MatMul in OpenVINO
    assert ignored({"op_types": ["Conv"]}) == ["MatMul"]
    assert ignored({"op_types": ["MatMul", "Gemm", "Conv"], "target_op_types": {"intel-npu": ["Gemm"]}}) == \
        ["Convolution", "GroupConvolution"]
