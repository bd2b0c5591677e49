"""Project files: device profiles (targets/*.yaml) and quantization recipes (recipes/*.yaml).

Both are validated with pydantic; a bad file is a one-line error naming the file and the field.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgevision.errors import BadInput
from edgevision.resources import resource_dir

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
NNCFPreset = Literal["performance", "mixed"]  # symmetric / asymmetric int8 activations

# `--target jetson` and friends: the family name picks this profile.
FAMILY_DEFAULT_PROFILE = {
    "cpu": "cpu",
    "intel-npu": "intel-core-ultra-npu",
    "rpi": "raspberry-pi-5",
    "jetson": "jetson-orin-nano",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThreadSplit(_Strict):
    """How a profile's cores are shared by the camera pipeline's stages (see edgevision run)."""

    inference: int = Field(1, ge=1)
    postprocess: int = Field(1, ge=0)


class TargetProfile(_Strict):
    name: str
    family: Literal["cpu", "intel-npu", "rpi", "jetson"]
    description: str
    runtimes: list[str] = Field(min_length=1)  # allowed runtimes; the first is the default
    precisions: list[Precision] = Field(min_length=1)
    threads: int = Field(2, ge=1)  # inference threads
    pipeline: ThreadSplit = ThreadSplit()
    dla_cores: int = Field(0, ge=0)
    static_shapes: bool = True  # the target's compiler needs static shapes: --dynamic-batch is refused
    default_imgsz: int | None = None
    memory_budget_mb: int = Field(1024, ge=64)
    device: str | None = None  # e.g. OpenVINO device name
    # NNCF's preset when a recipe names none: "performance" (symmetric int8 activations) where the hardware's
    # fastest int8 kernels want them, "mixed" (asymmetric) where ONNX Runtime on x86 would fall back to float.
    nncf_preset: NNCFPreset = "mixed"
    # Range of INT8 weights from ONNX Runtime's quantizer. 7 (-64..64) for bundles that may run on x86 CPUs
    # without VNNI: their u8 x s8 kernels (VPMADDUBSW) add pairs of products in 16 bits and saturate above 32767,
    # which 7-bit weights can never reach (255 * 64 * 2 = 32640), so one artifact computes the same on every x86.
    weight_bits: Literal[7, 8] = 8
    # How ONNX Runtime runs this target's QDQ graphs on a host. "native": its fused int8 kernels, as a device
    # would. "exact": Q/DQ left unfused, so INT8 is computed exactly as TensorRT does on the device, whatever
    # the host CPU's int8 kernels round or saturate (host-side checks of jetson bundles).
    onnxruntime_numerics: Literal["native", "exact"] = "native"


class MetricTolerance(_Strict):
    """A budget for one metric, in points (0-100): either a maximum drop versus the reference or a floor."""

    max_drop: float | None = Field(None, ge=0)
    min: float | None = None

    @model_validator(mode="after")
    def _one_of(self):
        if (self.max_drop is None) == (self.min is None):
            raise ValueError("give exactly one of max_drop or min")
        return self


Tolerances = dict[str, MetricTolerance]


class EvalSpec(_Strict):
    count: int = Field(200, ge=1)
    seed: int = 1


CalibrationMethod = Literal["mean-minmax", "minmax", "percentile", "entropy", "histogram"]  # histogram: rpi


class QuantizationSpec(_Strict):
    preset: NNCFPreset | None = None  # None: the target profile's nncf_preset
    ignored_types: list[str] = []  # op types kept in float (e.g. Sigmoid, Softmax of a detection head)
    # Layers kept in float by name: ONNX node names or PyTorch module paths of the exported wrapper
    # ("model.model.image_encoder.blocks.0": every node traced inside it) on cpu and jetson, module paths of the
    # traced graph on rpi, OpenVINO names on intel-npu; so per target family too.
    ignored_names: list[str] = []
    target_ignored_names: dict[str, list[str]] = {}
    subset_size: int = Field(300, ge=1)
    # How ONNX Runtime's quantizer (cpu, jetson) chooses activation ranges from the calibration set: the mean over
    # calibration images of each image's min and max ("mean-minmax", ORT's CalibMovingAverage), the extremes over
    # all images ("minmax"), a percentile of the histogram, or the entropy (KL) criterion of TensorRT's own
    # calibrator. Per target family where they differ. mean-minmax keeps one rare image from stretching a range
    # for all the others: on the demo detector it cut the mAP@0.5:0.95 drop from 1.23 to 0.25 (benchmarks/RESULTS.md).
    calibration_method: CalibrationMethod = "mean-minmax"
    target_calibration_method: dict[str, CalibrationMethod] = {}
    # ONNX op types that get Q/DQ on the cpu and jetson targets (None: every op ONNX Runtime quantizes on cpu,
    # TensorRT's INT8 layers on jetson). Transformers list [MatMul, Gemm, Conv]: LayerNorm, Softmax and GELU stay
    # float, where their ranges would cost accuracy and INT8 buys little.
    op_types: list[str] | None = None
    target_op_types: dict[str, list[str]] = {}  # per target family, where it differs from op_types
    # NNCF's model type (intel-npu): "transformer" quantizes attention as NNCF's transformer scheme does and
    # keeps the rest of the block as NNCF recommends for transformers; smooth_quant: NNCF's SmoothQuant alpha
    # (None: NNCF's default for the model type; -1 turns it off).
    model_type: Literal["transformer"] | None = None
    smooth_quant_alpha: float | None = None

    def op_types_for(self, family: str) -> list[str] | None:
        return self.target_op_types.get(family, self.op_types)

    def ignored_names_for(self, family: str) -> list[str]:
        return self.ignored_names + [n for n in self.target_ignored_names.get(family, []) if n not in self.ignored_names]

    def method_for(self, family: str) -> str:
        return self.target_calibration_method.get(family, self.calibration_method)

    def preset_for(self, profile: TargetProfile) -> str:
        return self.preset or profile.nncf_preset


class Recipe(_Strict):
    model: str
    primary_metric: str
    agreement_score_threshold: float = Field(0.25, ge=0, le=1)
    conf_threshold: float = Field(0.25, ge=0, le=1)  # what `run`/`demo` draw
    iou_threshold: float = Field(0.45, ge=0, le=1)
    eval: EvalSpec = EvalSpec()
    quantization: QuantizationSpec = QuantizationSpec()
    # graph name -> precision, for a graph kept more precise than --precision (e.g. mask_decoder: fp16 beside an
    # int8 image_encoder); graphs not named take --precision
    graph_precision: dict[str, Precision] = {}
    target_graph_precision: dict[str, dict[str, Precision]] = {}  # per target family, merged over graph_precision
    tolerances: dict[Precision, Tolerances] = {}
    target_tolerances: dict[str, dict[Precision, Tolerances]] = {}  # per target family, overrides

    def graph_precision_for(self, family: str) -> dict[str, Precision]:
        return {**self.graph_precision, **self.target_graph_precision.get(family, {})}

    def tolerances_for(self, family: str, precision: str) -> Tolerances:
        merged = dict(self.tolerances.get(precision, {}))  # type: ignore[arg-type]
        merged.update(self.target_tolerances.get(family, {}).get(precision, {}))  # type: ignore[arg-type]
        return merged


def _load_yaml(path: Path, schema: type[BaseModel]):
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise BadInput(f"{path}: cannot read YAML ({str(e).splitlines()[0]}); fix the file") from None
    try:
        return schema.model_validate(data or {})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise BadInput(f"{path}: field '{where}': {err['msg']}; fix the file") from None


@lru_cache(maxsize=None)
def target_profiles() -> dict[str, TargetProfile]:
    profiles = {}
    for path in sorted(resource_dir("targets").glob("*.yaml")):
        profile = _load_yaml(path, TargetProfile)
        if profile.name != path.stem:
            raise BadInput(f"{path}: name '{profile.name}' must match the file name '{path.stem}'")
        profiles[profile.name] = profile
    return profiles


def get_target(name: str) -> TargetProfile:
    """A profile by its name, or by family name (``jetson`` -> ``jetson-orin-nano``)."""
    profiles = target_profiles()
    name = FAMILY_DEFAULT_PROFILE.get(name, name)
    if name not in profiles:
        choices = ", ".join([*FAMILY_DEFAULT_PROFILE, *(p for p in profiles if p not in FAMILY_DEFAULT_PROFILE)])
        raise BadInput(f"unknown target '{name}'; choose one of: {choices} (see `edgevision targets`)")
    return profiles[name]


def load_recipe(model: str, task: str) -> Recipe:
    """recipes/<model>.yaml, or the task's default recipe (``Task.default_recipe``: a file under recipes/ or the
    recipe itself) when the model has none."""
    from edgevision.tasks import get_task

    path = resource_dir("recipes") / f"{model}.yaml"
    default = get_task(task).default_recipe
    if path.is_file():
        recipe = _recipe_file(path)
    elif isinstance(default, str):
        recipe = _recipe_file(resource_dir("recipes") / default)
    else:
        try:
            recipe = Recipe.model_validate({"model": model, **default})
        except ValidationError as e:
            raise BadInput(f"task {task}'s default recipe: {e.errors()[0]['msg']}; fix the task plug-in") from None
    return recipe if recipe.model == model else recipe.model_copy(update={"model": model})


@lru_cache(maxsize=None)
def _recipe_file(path: Path) -> Recipe:
    return _load_yaml(path, Recipe)


def bundle_recipe(meta) -> Recipe:
    """The recipe a bundle carries (``edgevision.json`` ``recipe``), else this version's recipe for its model."""
    if getattr(meta, "recipe", None):
        try:
            return Recipe.model_validate(meta.recipe)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise BadInput(f"{meta.model} bundle: recipe field '{where}': {err['msg']}; re-export the bundle") \
                from None
    return load_recipe(meta.model, meta.task)


def load_recipe_file(path: Path) -> Recipe:
    return _load_yaml(path, Recipe)
