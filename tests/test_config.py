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
    # linear layers only: convolutions and fused attention float (attention as plain MatMuls: by name, below)
    assert ignored({"op_types": ["Gemm"]}) == ["Convolution", "GroupConvolution", "ScaledDotProductAttention"]
    assert ignored({"op_types": ["Conv"]}) == ["ScaledDotProductAttention", "MatMul"]
    assert ignored({"op_types": ["MatMul", "Gemm", "Conv"], "target_op_types": {"intel-npu": ["MatMul", "Gemm"]}}) \
        == ["Convolution", "GroupConvolution"]


def test_layers_kept_float_by_name_add_per_target_family_to_the_common_list():
    q = Recipe.model_validate({"model": "m", "primary_metric": "miou", "quantization": {
        "ignored_names": ["/head/Conv"], "target_ignored_names": {"rpi": ["model.blocks.0", "/head/Conv"]}}}).quantization
    assert q.ignored_names_for("rpi") == ["/head/Conv", "model.blocks.0"]
    assert q.ignored_names_for("jetson") == ["/head/Conv"]
    assert q.ignored_names_for("rpi") is not q.ignored_names  # callers extend the result
    prompt = load_recipe("efficient-sam-demo", "prompt-segment").quantization
    assert prompt.ignored_names_for("rpi") == ["model.model.image_encoder.blocks.0"]
    assert prompt.ignored_names_for("intel-npu") == prompt.ignored_names_for("rpi")
    assert prompt.ignored_names_for("cpu") == []
    assert prompt.method_for("rpi") == "histogram" and prompt.method_for("jetson") == "percentile"
    assert prompt.method_for("intel-npu") == prompt.method_for("cpu") == "minmax"


def test_intel_npu_finds_the_matmuls_of_two_activations_by_name():
    import openvino as ov
    import torch

    from edgevision.export.nncf_quantize import activation_matmuls, openvino_ignored_names

    class Scores(torch.nn.Module):  # OpenVINO fuses softmax(q k^T) v into ScaledDotProductAttention; q k^T stays
        def __init__(self):
            super().__init__()
            self.qk = torch.nn.Linear(8, 16)

        def forward(self, x):  # (1, 4, 8) -> (1, 4, 4)
            q, k = self.qk(x).chunk(2, dim=-1)
            return q @ k.transpose(-1, -2)

    model = ov.convert_model(Scores().eval(), example_input=torch.randn(1, 4, 8))
    matmuls = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    found = activation_matmuls(model)
    assert len(matmuls) == 2 and len(found) == 1 and set(found) < set(matmuls)  # not the linear, with its weights
    recipe = Recipe.model_validate({"model": "m", "primary_metric": "miou", "quantization": {"op_types": ["Gemm"]}})
    assert openvino_ignored_names(model, recipe.quantization) == found
    recipe = Recipe.model_validate({"model": "m", "primary_metric": "miou",
                                    "quantization": {"op_types": ["MatMul", "Gemm"]}})
    assert openvino_ignored_names(model, recipe.quantization) == []
