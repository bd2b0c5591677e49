"""Why plain cpu INT8 uses ONNX Runtime's quantizer and not NNCF's ONNX backend (which --max-drop uses).

    python benchmarks/bench_onnx_quantizers.py [--model fast-yolo-demo] [--runs 40]

Exports the model's FP32 ONNX (the cpu bundle), quantizes it twice from the same calibration images: with
nncf.quantize (ONNX backend, MIXED preset, the recipe's ignored types, the stem simplified as the exporter
does) and with edgevision's cpu exporter
(ONNX Runtime QDQ, uint8 activations / int8 weights), then times the three graphs on ONNX Runtime's CPU
provider, interleaved in blocks, 2 threads. Prints medians and the ratios to FP32.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgevision.config import load_recipe
from edgevision.data.datasets import calibration_set
from edgevision.export import export_bundle
from edgevision.export.onnx_graph import simplify_input_stem
from edgevision.models.registry import get_variant


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    import nncf

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fast-yolo-demo")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    variant = get_variant(args.model)
    recipe = load_recipe(args.model, variant.task)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32 = export_bundle(args.model, "cpu", "fp32", tmp / "fp32", measure_reference=False)
        ours = export_bundle(args.model, "cpu", "int8", tmp / "int8", measure_reference=False)
        model = onnx.load(str(fp32.graph_path("model")))
        simplify_input_stem(model)  # as the cpu exporter does before NNCF's accuracy control
        name = fp32.meta.graphs["model"].input("image").bound_name
        calib = calibration_set(None, variant.imgsz, variant.stride, variant.preprocess.resize,
                                limit=recipe.quantization.subset_size)
        quantized = nncf.quantize(model, nncf.Dataset(list(calib.batches), lambda x: {name: x}),
                                  preset=nncf.QuantizationPreset.MIXED, subset_size=len(calib),
                                  ignored_scope=nncf.IgnoredScope(types=list(recipe.quantization.ignored_types),
                                                                  validate=False))
        nncf_path = tmp / "nncf.onnx"
        onnx.save(quantized, str(nncf_path))
        zero_points = Counter(onnx.TensorProto.DataType.Name(i.data_type) for i in quantized.graph.initializer
                              if "zero_point" in i.name)
        print(f"NNCF ONNX zero points by type: {dict(zero_points)}")
        graphs = {"ORT FP32": fp32.graph_path("model"), "NNCF ONNX INT8 (MIXED)": nncf_path,
                  "edgevision cpu INT8 (ORT QDQ u8/s8)": ours.graph_path("model")}
        sessions = {k: _session(p, args.threads) for k, p in graphs.items()}
        x = np.random.default_rng(0).integers(0, 256, (1, variant.imgsz, variant.imgsz, 3), dtype=np.uint8)
        times: dict[str, list[float]] = {k: [] for k in graphs}
        for _ in range(args.runs // 5):
            for k, s in sessions.items():
                s.run(None, {name: x})  # untimed lead-in: the previous session's threads settle
                for _ in range(5):
                    t = time.perf_counter()
                    s.run(None, {name: x})
                    times[k].append((time.perf_counter() - t) * 1000)
        base = float(np.median(times["ORT FP32"]))
        for k, v in times.items():
            med = float(np.median(v))
            print(f"{k:38s} {med:7.2f} ms  {base / med:5.2f}x ORT FP32")


if __name__ == "__main__":
    main()
