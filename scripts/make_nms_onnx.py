"""Build edgevision/ops/nms.onnx: one ONNX NonMaxSuppression node, run by ONNX Runtime's CPU provider.

The file is committed so that devices need only onnxruntime, not onnx:  python scripts/make_nms_onnx.py
"""

from pathlib import Path

import onnx
from onnx import TensorProto, helper

OUT = Path(__file__).resolve().parents[1] / "edgevision" / "ops" / "nms.onnx"


def build() -> onnx.ModelProto:
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_output", "iou_threshold", "score_threshold"],
                            ["selected"], center_point_box=0)
    graph = helper.make_graph(
        [node], "edgevision_nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, "N", 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "N"]),
         helper.make_tensor_value_info("max_output", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("iou_threshold", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("score_threshold", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, ["M", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgevision")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    OUT.write_bytes(build().SerializeToString())
    print(f"wrote {OUT}")
