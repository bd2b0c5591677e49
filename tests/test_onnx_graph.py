"""The ONNX graph rewrites the INT8 exporters apply before quantizing, on small hand-built graphs run by ONNX Runtime."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is in the [export] extra; the graph rewrites need it")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgevision.export.onnx_graph import input_stem_nodes, simplify_input_stem  # noqa: E402


def stem_graph(scale, shift):
    """uint8 NHWC -> transpose -> cast -> mul(scale) -> add(shift) -> 1x1 conv: the uint8 wrapper's shape."""
    nodes = [
        helper.make_node("Transpose", ["images"], ["t"], perm=[0, 3, 1, 2], name="permute"),
        helper.make_node("Cast", ["t"], ["f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["f", "scale"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "shift"], ["a"], name="add"),
        helper.make_node("Conv", ["a", "w"], ["out"], name="conv"),
    ]
    inits = [numpy_helper.from_array(np.asarray(scale, np.float32).reshape(1, 3, 1, 1), "scale"),
             numpy_helper.from_array(np.asarray(shift, np.float32).reshape(1, 3, 1, 1), "shift"),
             numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 1, 1)).astype(np.float32), "w")]
    graph = helper.make_graph(nodes, "stem", [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 6, 8, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 6, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


def test_input_stem_stops_at_the_first_conv():
    assert input_stem_nodes(stem_graph([1, 1, 1], [0, 0, 0])) == ["permute", "cast", "mul", "add"]


@pytest.mark.parametrize("scale, shift, ops", [
    ([1 / 255] * 3, [0, 0, 0], ["Transpose", "Cast", "Mul", "Conv"]),  # scalar scale, zero shift dropped
    ([1 / 255] * 3, [0.5] * 3, ["Transpose", "Cast", "Mul", "Add", "Conv"]),  # both become scalars
    ([1 / 58.4, 1 / 57.1, 1 / 57.4], [-2.1, -2.0, -1.8], ["Transpose", "Cast", "Mul", "Add", "Conv"]),  # per channel
])
def test_simplify_input_stem_is_exact(scale, shift, ops):
    model = stem_graph(scale, shift)
    x = np.random.default_rng(1).integers(0, 256, (1, 6, 8, 3)).astype(np.uint8)
    before = run(model, x)
    simplify_input_stem(model)
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ops
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert set(inits) == {name for n in model.graph.node for name in n.input} & set(inits)  # none left unused
    per_channel = len(set(scale)) > 1
    mul = next(n for n in model.graph.node if n.op_type == "Mul")
    assert inits[mul.input[1]].shape == ((1, 3, 1, 8) if per_channel else ())  # per channel: repeated along W
    np.testing.assert_array_equal(run(model, x), before)


def test_a_module_path_keeps_that_block_float_under_nncf_on_intel_npu(tmp_path):
    """intel-npu's NNCF matches OpenVINO friendly names, which are the ONNX node names: a recipe's module path
    ("blocks.0") must resolve to the nodes traced inside that module, so the same name means the same block on
    every target."""
    torch = pytest.importorskip("torch")
    ov = pytest.importorskip("openvino", reason="openvino is in the [export] extra")
    nncf = pytest.importorskip("nncf", reason="nncf is in the [export] extra")
    from edgevision.bundle import TensorSpec
    from edgevision.export.nncf_quantize import openvino_module_names
    from edgevision.graphs import export_onnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU())
                                                for _ in range(2)])

        def forward(self, x):
            return self.blocks(x)

    path = tmp_path / "net.onnx"
    export_onnx(Net().eval(), path, inputs=[TensorSpec(name="x", shape=[1, 8, 16], dtype="float32")],
                output_names=["y"])
    names = openvino_module_names(path, ["blocks.0", "/not/a/module"])
    assert names[:2] == ["blocks.0", "/not/a/module"] and len(names) > 2

    def matmuls_quantized(ignored):
        model = ov.convert_model(str(path))
        data = nncf.Dataset([{"x": np.random.default_rng(i).normal(size=(1, 8, 16)).astype(np.float32)}
                             for i in range(4)])
        quantized = nncf.quantize(model, data, subset_size=4,
                                  ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
        quantized_inputs = set()
        for op in quantized.get_ordered_ops():
            if op.get_type_name() == "MatMul":
                quantized_inputs.add((op.get_friendly_name(), any(op.input_value(i).get_node().get_type_name()
                                                           == "FakeQuantize" for i in range(2))))
        return quantized_inputs

    unscoped = matmuls_quantized([])
    scoped = matmuls_quantized(names)
    assert all(q for _, q in unscoped) and len(unscoped) == 2
    assert sorted(q for _, q in scoped) == [False, True]  # block 0's MatMul float, block 1's int8
    assert matmuls_quantized(["blocks.0"]) == unscoped  # the bare module path alone matches no OpenVINO op
