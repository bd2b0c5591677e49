import json

import pytest

from edgevision.bundle import FORMAT_VERSION, META_FILE, check_output_dir, load_bundle, staging_dir
from edgevision.errors import BadInput


def test_staging_leaves_nothing_when_the_build_fails(tmp_path):
    out = tmp_path / "b"
    with pytest.raises(RuntimeError):
        with staging_dir(out, force=False) as work:
            (work / "half.bin").write_bytes(b"x")
            raise RuntimeError("converter crashed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_rebuild_never_touches_the_existing_bundle(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(RuntimeError):
        with staging_dir(out, force=True) as work:
            (work / "new.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert (out / "keep.txt").read_text() == "user data"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_force_replaces_only_when_complete_and_existing_needs_force(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(BadInput, match="already exists; pass --force"):
        with staging_dir(out, force=False):
            pass
    with staging_dir(out, force=True) as work:
        (work / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # still the old bundle while the new one is being built
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_unwritable_or_impossible_output_dirs(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(BadInput, match="is a file, not a directory"):
        check_output_dir(f / "bundle", force=False)
    with pytest.raises(BadInput, match="exists and is not a directory"):
        check_output_dir(f, force=True)


def _fake_bundle(tmp_path, graph=None, **overrides):
    b = tmp_path / "bundle"
    b.mkdir(parents=True)
    (b / "model.onnx").write_bytes(b"")
    model = {"artifact": "model.onnx", "artifact_format": "onnx", "precision": "int8",
             "inputs": [{"name": "image", "shape": [1, 224, 224, 3], "dtype": "uint8", "layout": "NHWC"}],
             "outputs": [{"name": "output", "shape": [1, 7, 7, 15], "dtype": "float32"}], **(graph or {})}
    meta = {"format_version": FORMAT_VERSION, "edgevision_version": "0", "created": "now", "model": "fast-yolo-demo",
            "family": "x:Y", "task": "detect", "imgsz": 224, "graphs": {"model": model},
            "preprocess": {"resize": "letterbox"}, "head": {"kind": "yolov1"}, "labels": ["a"],
            "precision": "int8", "target": "cpu", "target_family": "cpu"}
    meta.update(overrides)
    (b / META_FILE).write_text(json.dumps(meta))
    return b


def test_bundle_round_trip_and_version_checks(tmp_path):
    from edgevision.bundle import write_meta

    first = load_bundle(_fake_bundle(tmp_path, {"quantization": {"tool": "x", "weight_bits": 7}, "macs": 123}))
    again = tmp_path / "again"
    again.mkdir()
    (again / "model.onnx").write_bytes(b"")
    write_meta(again, first.meta)
    assert load_bundle(again).meta.model_dump() == first.meta.model_dump()  # every field survives the trip
    graph = first.meta.graphs["model"]
    assert graph.quantization["weight_bits"] == 7 and first.meta.macs == 123
    assert graph.input("image").layout == "NHWC" and graph.output_names == ["output"]
    assert first.format_read == FORMAT_VERSION == 2
    with pytest.raises(BadInput, match="missing format_version"):
        load_bundle(_fake_bundle(tmp_path / "v", format_version=None))
    with pytest.raises(BadInput, match="missing format_version"):
        load_bundle(_fake_bundle(tmp_path / "s", format_version="1"))
    with pytest.raises(BadInput, match="field 'graphs.model.precision'"):
        load_bundle(_fake_bundle(tmp_path / "p", {"precision": "int4"}))


def test_graphs_of_a_multi_graph_bundle_are_checked(tmp_path):
    decoder = {"artifact": "mask_decoder.onnx", "artifact_format": "onnx", "precision": "fp16",
               "inputs": [{"name": "image_embeddings", "shape": [1, 256, 16, 16], "dtype": "float32"}],
               "outputs": [{"name": "low_res_masks", "shape": [1, 3, 64, 64], "dtype": "float32"}]}
    path = _fake_bundle(tmp_path, graphs={"image_encoder": {
        "artifact": "model.onnx", "artifact_format": "onnx", "precision": "int8",
        "inputs": [{"name": "image", "shape": [1, 224, 224, 3], "dtype": "uint8"}],
        "outputs": [{"name": "image_embeddings", "shape": [1, 256, 16, 16], "dtype": "float32"}]},
        "mask_decoder": decoder})
    with pytest.raises(BadInput, match="artifact 'mask_decoder.onnx' of graph 'mask_decoder' is missing"):
        load_bundle(path)
    (path / "mask_decoder.onnx").write_bytes(b"")
    b = load_bundle(path)
    assert list(b.meta.graphs) == ["image_encoder", "mask_decoder"]
    assert b.graph_path("mask_decoder") == path / "mask_decoder.onnx"
    with pytest.raises(BadInput, match="has no graph 'memory_encoder' \\(it has: image_encoder, mask_decoder\\)"):
        b.meta.graph("memory_encoder")


def test_format_1_metadata_reads_as_one_graph(tmp_path):
    b = tmp_path / "old"
    b.mkdir()
    (b / "model.tflite").write_bytes(b"")
    meta = {"format_version": 1, "edgevision_version": "0.1", "created": "then", "model": "fast-yolo-demo",
            "family": "x:Y", "task": "detect", "imgsz": 224,
            "input": {"name": "images", "shape": [1, 224, 224, 3], "dtype": "uint8", "layout": "NHWC"},
            "outputs": [{"name": "output", "shape": [1, 7, 7, 15], "dtype": "float32"}],
            "preprocess": {"resize": "letterbox"}, "head": {"kind": "yolov1"}, "labels": ["a"],
            "precision": "int8", "target": "rpi", "target_family": "rpi", "artifact": "model.tflite",
            "artifact_format": "tflite", "quantization": {"tool": "litert-torch PT2E"}, "macs": 7,
            "artifact_io": {"input": {"name": "serving_default_args_0:0", "dtype": "int8", "layout": "NHWC"},
                            "outputs": [{"name": "StatefulPartitionedCall:0", "dtype": "float32"}]}}
    (b / META_FILE).write_text(json.dumps(meta))
    loaded = load_bundle(b)
    assert loaded.format_read == 1 and loaded.meta.format_version == 2
    graph = loaded.meta.graphs["model"]
    assert graph.input("image").artifact_name == "serving_default_args_0:0"  # bound by the .tflite's names
    assert graph.output("output").artifact_name == "StatefulPartitionedCall:0"
    assert graph.quantization == {"tool": "litert-torch PT2E"} and loaded.meta.macs == 7
    assert graph.artifact_io["inputs"][0]["layout"] == "NHWC"
    del meta["artifact_format"]
    (b / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BadInput, match="format 1 edgevision.json: field 'artifact_format' missing"):
        load_bundle(b)


def test_newer_format_version_is_refused(tmp_path):
    with pytest.raises(BadInput, match="format_version 99 is newer.*upgrade edgevision"):
        load_bundle(_fake_bundle(tmp_path, format_version=99))


def test_missing_artifact_and_not_a_bundle(tmp_path):
    b = _fake_bundle(tmp_path, {"artifact": "gone.onnx"})
    with pytest.raises(BadInput, match="artifact 'gone.onnx' of graph 'model' is missing"):
        load_bundle(b)
    with pytest.raises(BadInput, match="not a bundle"):
        load_bundle(tmp_path)
    with pytest.raises(BadInput, match="no such bundle"):
        load_bundle(tmp_path / "nope")


def test_a_bundle_carries_its_recipe_and_is_judged_by_it(yolo_cpu_int8, tmp_path):
    """Export copies the recipe (thresholds, eval set, tolerances) into edgevision.json, so a device with another
    edgevision judges and draws the bundle as the host did: edit the copy, and check and run follow it."""
    import shutil

    import numpy as np

    from edgevision.check.compare import check_bundle
    from edgevision.config import load_recipe
    from edgevision.predictor import Predictor

    meta = yolo_cpu_int8.meta
    assert meta.recipe == load_recipe(meta.model, meta.task).model_dump(mode="json")
    copy = tmp_path / "b"
    shutil.copytree(yolo_cpu_int8.path, copy)
    raw = json.loads((copy / META_FILE).read_text())
    raw["recipe"]["tolerances"]["int8"]["agreement_map50"] = {"min": 99.99}
    raw["recipe"]["conf_threshold"] = 0.99
    (copy / META_FILE).write_text(json.dumps(raw))
    report = check_bundle(load_bundle(copy), reference=False)
    assert not report["passed"] and report["tolerances"]["agreement_map50"] == {"min": 99.99}
    frame = np.load(copy / "golden.npz")["model/inputs/image"][0]
    with Predictor(load_bundle(copy)) as strict, Predictor(load_bundle(copy), conf=0.05) as loose:
        assert len(strict.predict(frame)) < len(loose.predict(frame))
