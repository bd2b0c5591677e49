"""Raspberry Pi (LiteRT) and Jetson (TensorRT-style QDQ ONNX) targets, and bundles as one file."""

import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from edgevision.bundle import load_bundle, pack_bundle
from edgevision.check.compare import check_bundle
from edgevision.cli import main
from edgevision.errors import BadInput, MissingDependency
from edgevision.predictor import Predictor

TARGETS = ["cpu", "intel-npu", "rpi", "jetson"]


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model, imgsz", [("fast-yolo-demo", 160), ("mobile-unet", 128)])
def test_every_model_exports_to_every_target_at_a_small_size_and_runs(model, target, imgsz, tmp_path):
    from edgevision.export import export_bundle

    b = export_bundle(model, target, "int8", tmp_path / "b", imgsz=imgsz, measure_reference=False)
    assert b.meta.imgsz == imgsz
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    with Predictor(b) as p:
        out = p.infer(p.preprocess(frame)[0])["output"]
        result = p.predict(frame)
    if model == "fast-yolo-demo":
        assert out.shape == (1, imgsz // 32, imgsz // 32, 15)
        assert result.boxes.shape[1] == 4
    else:
        assert out.shape == (1, 6, imgsz, imgsz)
        assert result.label_map.shape == (240, 320)


@pytest.fixture(scope="session")
def rpi_checks(export_once):
    return {m: check_bundle(export_once(m, "rpi", "int8")) for m in ("fast-yolo-demo", "mobile-unet")}


@pytest.fixture(scope="session")
def jetson_checks(export_once):
    return {m: check_bundle(export_once(m, "jetson", "int8")) for m in ("fast-yolo-demo", "mobile-unet")}


@pytest.mark.parametrize("model", ["fast-yolo-demo", "mobile-unet"])
def test_rpi_int8_within_the_spine_budget(rpi_checks, model):
    r = rpi_checks[model]
    assert r["passed"], r["failures"]
    assert r["runtime"]["runtime"] == "litert"


@pytest.mark.parametrize("model", ["fast-yolo-demo", "mobile-unet"])
def test_jetson_int8_within_the_spine_budget_checked_with_onnxruntime(jetson_checks, model):
    r = jetson_checks[model]
    assert r["passed"], r["failures"]
    assert r["runtime"]["runtime"] == "onnxruntime"  # the host stand-in for TensorRT


def test_rpi_int8_is_full_int8(export_once):
    b = export_once("fast-yolo-demo", "rpi", "int8")
    graph = b.meta.graphs["model"]
    (image,) = graph.artifact_io["inputs"]
    assert image["dtype"] == "int8" and image["layout"] == "NHWC"
    assert graph.input("image").artifact_name == image["name"]  # bound by the .tflite's own tensor name
    # everything but the head's float tail computes in int8
    assert set(graph.quantization["float_ops"]) <= {"LOGISTIC", "SOFTMAX", "CONCATENATION"}
    assert not {"CONV_2D", "DEPTHWISE_CONV_2D"} & set(graph.quantization["float_ops"])
    unet = export_once("mobile-unet", "rpi", "int8")
    assert "CONV_2D" not in unet.meta.graphs["model"].quantization["float_ops"]


def test_rpi_bundles_record_what_xnnpack_delegates(export_once):
    """Counted on the interpreter after delegation (DELEGATE nodes and the ops between their boundary tensors)."""
    from edgevision.check.bench import xnnpack_notes
    from edgevision.runtime.litert import xnnpack_delegation

    unet = export_once("mobile-unet", "rpi", "int8")
    record = unet.meta.graphs["model"].quantization["xnnpack"]
    assert record == {**xnnpack_delegation(unet.graph_path("model")), "latest_features": False,
                      "delegated_without_latest_features": record["ops"]}
    assert record["delegated"] == record["ops"] > 50 and record["partitions"] == 1  # all of it, in one piece
    assert xnnpack_notes(unet.meta) == [f"XNNPACK runs {record['ops']} of {record['ops']} ops of graph model in "
                                        "1 partition(s)"]


def test_jetson_int8_qdq_is_in_tensorrt_form(export_once):
    import onnx
    from onnx import numpy_helper

    b = export_once("fast-yolo-demo", "jetson", "int8")
    model = onnx.load(str(b.graph_path("model")))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert q_nodes
    int8_zero_points = 0
    for n in q_nodes:
        if len(n.input) > 2 and n.input[2] in inits:
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), f"{n.name}: zero point must be int8 0"
            int8_zero_points += 1
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            # TensorRT's parser refuses a DequantizeLinear of int32 ("only activation types allowed"): biases
            # must stay float
            assert inits[n.input[0]].dtype == np.int8, f"{n.name}: dequantizes {inits[n.input[0]].dtype}"
    assert int8_zero_points > 0
    per_channel = [n for n in q_nodes if n.op_type == "DequantizeLinear" and inits.get(n.input[1]) is not None
                   and inits[n.input[1]].ndim == 1 and inits[n.input[1]].size > 1]
    assert per_channel, "conv weights are quantized per channel"
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    for n in model.graph.node:
        if n.op_type in ("Sigmoid", "Softmax"):
            assert not any(t in ("QuantizeLinear",) for t in consumers.get(n.output[0], []))
    assert b.meta.graphs["model"].input("image").shape == [1, 224, 224, 3]  # static by default


def test_jetson_fp16_onnx_keeps_uint8_input_and_float32_output(export_once):
    import onnx

    b = export_once("fast-yolo-demo", "jetson", "fp16", random_weights=True)
    model = onnx.load(str(b.graph_path("model")))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    report = check_bundle(b)
    (sim,) = report["output_similarity"].values()
    assert sim["cosine"] > 0.999


@pytest.mark.slow
def test_dynamic_batch(tmp_path):
    from edgevision.export import export_bundle

    b = export_bundle("fast-yolo-demo", "jetson", "fp32", tmp_path / "b", random_weights=True, dynamic_batch=True)
    with Predictor(b) as p:  # the artifact itself takes the batch of 3 at once
        out = p.runner.run("model", {"image": np.zeros((3, 224, 224, 3), np.uint8)})["output"]
    assert out.shape[0] == 3


def test_a_runtime_the_target_does_not_allow_is_refused(capsys, export_once):
    b = export_once("fast-yolo-demo", "rpi", "int8")
    assert main(["check", str(b.path), "--runtime", "onnxruntime"]) == 2
    assert "allowed: litert" in capsys.readouterr().err


def test_tensorrt_is_imported_lazily_and_missing_tensorrt_is_explained(capsys, export_once):
    import edgevision.runtime.tensorrt as trt_runtime  # importing the module needs no TensorRT

    assert "tensorrt" not in sys.modules
    b = export_once("fast-yolo-demo", "jetson", "int8")
    with pytest.raises(MissingDependency, match=r"JetPack 6.*edgevision\[jetson\]"):
        trt_runtime.TensorRTRunner(b)
    assert main(["build-engine", str(b.path)]) == 2
    assert "JetPack" in capsys.readouterr().err
    assert main(["check", str(b.path), "--runtime", "tensorrt"]) == 2


def test_engine_tag_mismatch_is_refused(tmp_path):
    from edgevision.runtime.tensorrt import check_engine_tag, read_engine_tag

    stored = {"tensorrt": "10.3.0", "gpu": "Orin (nvgpu)"}
    check_engine_tag(stored, dict(stored), tmp_path)
    with pytest.raises(BadInput, match="built for tensorrt '10.3.0'.*'10.7.0'.*rebuild it here"):
        check_engine_tag(stored, {"tensorrt": "10.7.0", "gpu": "Orin (nvgpu)"}, tmp_path)
    with pytest.raises(BadInput, match="built for gpu 'Orin \\(nvgpu\\)'.*rebuild"):
        check_engine_tag(stored, {"tensorrt": "10.3.0", "gpu": "Xavier"}, tmp_path)
    with pytest.raises(BadInput, match="no TensorRT engine yet; build it on the Jetson"):
        read_engine_tag(tmp_path)


def test_build_engine_refuses_other_targets(capsys, export_once):
    b = export_once("fast-yolo-demo", "rpi", "int8")
    assert main(["build-engine", str(b.path)]) == 2
    assert "takes jetson bundles" in capsys.readouterr().err


def test_archive_round_trip(capsys, export_once, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    b = export_once("mobile-unet", "rpi", "int8")
    archive = pack_bundle(b.path, tmp_path / "unet.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert f"{b.path.name}/edgevision.json" in names and f"{b.path.name}/model.tflite" in names
    loaded = load_bundle(archive)
    assert loaded.meta.model == "mobile-unet" and loaded.path.is_dir()
    assert load_bundle(archive).path == loaded.path  # extracted once, then reused
    assert main(["bench", str(archive), "--runs", "2", "--warmup", "0", "--no-reference"]) == 0


@pytest.mark.slow
def test_export_archive_flag(capsys, tmp_path):
    out = tmp_path / "b"
    assert main(["export", "fast-yolo-demo", "--target", "rpi", "--precision", "fp32", "--random-weights",
                 "--out", str(out), "--archive"]) == 0
    assert (tmp_path / "b.tar.gz").is_file()


def test_hostile_archive_is_refused(tmp_path, monkeypatch):
    import io

    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../escape.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BadInput, match="unexpected entry"):
        load_bundle(evil)
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.slow
def test_op_the_target_cannot_convert_is_named(tmp_path):
    import torch

    from edgevision.export.rpi import _convert, _litert_torch

    class Unsupported(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.inv(x)

    # litert-torch fails inside its decompositions without naming the op; edgevision finds it
    with pytest.raises(BadInput, match=r"op aten\.linalg_inv_ex\.default cannot be converted for the rpi target; "
                                       r"try --precision fp16, or --target cpu"):
        _convert(_litert_torch(), Unsupported().eval(), (torch.eye(4)[None] + 1,), tmp_path / "m.tflite")


@pytest.mark.slow
def test_a_converter_failure_that_names_no_op_of_the_model_is_not_bad_input(tmp_path):
    """Exit 2 is for faults in the user's input. A conversion that fails without any op of the model to blame
    (here an AttributeError, as a bug in edgevision's own wrapper would raise) is exit 3, suggesting --debug."""
    import torch

    from edgevision.errors import EdgevisionError
    from edgevision.export.rpi import _convert, _litert_torch

    class Broken(torch.nn.Module):
        def forward(self, x):
            return x.no_such_method()

    with pytest.raises(EdgevisionError, match="bug in edgevision or the converter") as e:
        _convert(_litert_torch(), Broken().eval(), (torch.zeros(1, 3),), tmp_path / "m.tflite")
    assert e.value.exit_code == 3 and not isinstance(e.value, BadInput)


@pytest.mark.slow
def test_missing_converter_names_the_extra(tmp_path):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, *a):\n"
        "        if name.split('.')[0] == 'litert_torch': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgevision.cli import main\n"
        f"sys.exit(main(['export', 'fast-yolo-demo', '--target', 'rpi', '--random-weights', '--out', "
        f"{str(tmp_path / 'b')!r}]))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "pip install 'edgevision[rpi-export]'" in res.stderr
    assert not (tmp_path / "b").exists()


def test_targets_verb_lists_all_profiles_and_help_maps_families(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for profile in ("cpu", "intel-core-ultra-npu", "raspberry-pi-5", "raspberry-pi-4", "jetson-orin-nano",
                    "jetson-agx-orin"):
        assert profile in out
    assert main(["targets", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())  # help wraps lines
    assert "rpi -> raspberry-pi-5" in help_text and "jetson -> jetson-orin-nano" in help_text


def test_a_static_shapes_target_refuses_dynamic_batch(capsys, tmp_path):
    """static_shapes is the target compiler's need (the NPU compiler, LiteRT): --dynamic-batch is refused there
    before any work, and accepted where the runtime handles it (test_dynamic_batch)."""
    from edgevision.config import get_target

    assert get_target("intel-npu").static_shapes and get_target("rpi").static_shapes
    assert not get_target("cpu").static_shapes and not get_target("jetson").static_shapes
    for target in ("intel-npu", "rpi"):
        out = tmp_path / target
        assert main(["export", "fast-yolo-demo", "--target", target, "--dynamic-batch", "--random-weights",
                     "--out", str(out)]) == 2
        assert "needs static shapes" in capsys.readouterr().err and not out.exists()


def test_check_reports_the_runtime_memory_against_the_profile_budget(yolo_cpu_int8):
    report = check_bundle(yolo_cpu_int8, reference=False)
    mem = report["memory"]
    assert mem["budget_mb"] == 2048 and 0 <= mem["runtime_mb"] < mem["process_mb"]
    assert report["passed"]


def test_check_on_an_archive_writes_its_report_beside_the_archive(capsys, export_once, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    b = export_once("mobile-unet", "rpi", "int8")
    clean = tmp_path / "mobile-unet-rpi-int8"
    shutil.copytree(b.path, clean, ignore=shutil.ignore_patterns("report.json"))  # other tests check the original
    archive = pack_bundle(clean, tmp_path / "device" / "unet-rpi.tar.gz")
    assert main(["check", str(archive), "--no-reference"]) == 0
    beside = tmp_path / "device" / "unet-rpi.report.json"
    assert beside.is_file() and json.loads(beside.read_text())["bundle"]["model"] == "mobile-unet"
    assert f"report: {beside}" in capsys.readouterr().out
    assert not list((tmp_path / "cache").rglob("report.json"))  # nothing hidden in the cache
    elsewhere = tmp_path / "reports"
    assert main(["check", str(archive), "--no-reference", "--out", str(elsewhere)]) == 0
    assert (elsewhere / "report.json").is_file()


def test_build_engine_on_an_archive_writes_a_new_archive_with_the_engine(export_once, tmp_path, monkeypatch):
    """The delivery half of build-engine (TensorRT itself only runs on a Jetson): the engine lands in a new
    archive beside the old one, written atomically; the old archive and the cache are untouched."""
    from edgevision.export.tensorrt_engine import deliver
    from edgevision.runtime.tensorrt import engine_file

    ENGINE_FILE = engine_file("model")

    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    b = export_once("fast-yolo-demo", "jetson", "int8")
    archive = pack_bundle(b.path, tmp_path / "yolo-jetson.tar.gz")
    before = archive.read_bytes()
    loaded = load_bundle(archive)

    def build(directory):  # stands in for TensorRT's builder, which writes these files on the device
        (directory / ENGINE_FILE).write_bytes(b"engine bytes")
        return {"tensorrt": "10.x", "gpu": "test"}

    tag = deliver(loaded, build)
    new = tmp_path / "yolo-jetson.engine.tar.gz"
    assert tag["written"] == str(new) and archive.read_bytes() == before
    with tarfile.open(new) as tar:
        assert f"{b.path.name}/{ENGINE_FILE}" in tar.getnames()
    assert not (loaded.path / ENGINE_FILE).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    with pytest.raises(BadInput, match="already exists"):
        deliver(loaded, build)
    out = tmp_path / "out"
    assert deliver(load_bundle(b.path), build, out_dir=out)["written"] == str(out / b.path.name)
    assert (out / b.path.name / ENGINE_FILE).is_file() and not (b.path / ENGINE_FILE).exists()


@pytest.mark.slow
def test_an_rpi_export_prints_only_edgevision_lines(tmp_path):
    """litert-torch, torchao, absl and TFLite printed about a dozen lines of their own into every rpi export;
    they are silenced unless --debug."""
    res = subprocess.run([sys.executable, "-m", "edgevision", "export", "mobile-unet", "--target", "rpi",
                          "--precision", "fp32", "--random-weights", "--imgsz", "128", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = (res.stdout + res.stderr).strip().splitlines()
    foreign = [line for line in lines if not (line.startswith(("[", "bundle:", "next:", "FP32 reference")))]
    assert foreign == [], foreign


# litert-torch turns a batch-1 matmul of two graph tensors into a FULLY_CONNECTED with non-constant weights,
# which XNNPACK leaves to TFLite's own kernels: at 1024 px those took 60 % of the prompt decoder's time.
@pytest.mark.slow
@pytest.mark.parametrize("model, graph", [("efficient-sam-demo", "mask_decoder"),
                                          ("sam-track-demo", "memory_attention")])
def test_xnnpack_runs_every_attention_matmul_on_rpi(export_once, model, graph):
    bundle = export_once(model, "rpi", "fp32", measure_reference=False, golden=0)
    record = bundle.meta.graphs[graph].quantization["xnnpack"]
    left = record["not_delegated"]
    assert "FULLY_CONNECTED" not in left and "BATCH_MATMUL" not in left, left
    assert record["partitions"] <= 4, record
