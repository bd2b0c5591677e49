"""DeiT / ViT written here with timm's key names: the official checkpoints' layouts load strictly (timm
.safetensors, a plain .pth state_dict, facebookresearch/deit's {"model": ...}), and the model reproduces timm
1.0.31's logits for the stand-in weights of ``../shared/reference`` (made by its ``manifest_weights.py``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import SHARED
from edgevision.cli import main
from edgevision.errors import BadInput
from edgevision.models.loading import build_model
from edgevision.models.registry import get_variant

REFERENCE = SHARED / "reference"
# timm's logits reach 3.5; float32 noise through 12 blocks is ~3e-6 here. 2e-4 is the bound for the
# PyTorch model fed the reference's own float inputs.
TORCH_ATOL = 2e-4


def stand_in_weights(name: str) -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(REFERENCE))
    try:
        from manifest_weights import manifest_weights
    finally:
        sys.path.remove(str(REFERENCE))
    state = manifest_weights(SHARED / "manifests" / f"{name}.json", seed=0)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


@pytest.mark.parametrize("variant, name, layout", [
    ("deit-tiny", "deit_tiny_patch16_224", "safetensors"),
    ("deit-tiny-distilled", "deit_tiny_distilled_patch16_224", "deit"),
])
def test_deit_matches_timm_logits(variant, name, layout, tmp_path):
    state = stand_in_weights(name)
    if layout == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path))
    else:  # facebookresearch/deit's checkpoints wrap the state_dict as {"model": ...}
        path = tmp_path / f"{name}.pth"
        torch.save({"model": state, "epoch": 300}, path)
    model = build_model(get_variant(variant), weights=path)
    ref = np.load(REFERENCE / f"{name}.npz")
    with torch.inference_mode():
        logits = model(torch.from_numpy(ref["inputs"])).numpy()
    assert np.abs(logits - ref["logits"]).max() < TORCH_ATOL
    assert (logits.argmax(1) == ref["logits"].argmax(1)).all()


def test_a_deit_small_checkpoint_given_to_deit_tiny_names_the_key_and_both_shapes(tmp_path, capsys):
    path = tmp_path / "deit_small.pth"
    torch.save(stand_in_weights("deit_small_patch16_224"), path)  # same keys, other shapes
    with pytest.raises(BadInput, match=r"cls_token \(1, 1, 384\) vs \(1, 1, 192\)"):
        build_model(get_variant("deit-tiny"), weights=path)
    state = stand_in_weights("deit_tiny_patch16_224")
    state["head_dist.weight"] = state["head.weight"]
    del state["norm.bias"]
    torch.save(state, path)
    assert main(["export", "deit-tiny", "--weights", str(path), "--target", "cpu", "--precision", "fp32",
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "missing 1 (e.g. norm.bias)" in err and "unexpected 1 (e.g. head_dist.weight)" in err
    assert len(err.strip().splitlines()) == 1


def test_position_embedding_is_resampled_once_for_another_input_size():
    torch.manual_seed(0)
    model = get_variant("deit-tiny-distilled").build().eval()
    before = model.pos_embed.detach().clone()
    model.set_input_size(224)
    assert torch.equal(model.pos_embed, before)  # the trained size: untouched
    model.set_input_size(112)
    assert model.pos_embed.shape == (1, 2 + 7 * 7, 192)
    assert torch.equal(model.pos_embed[:, :2], before[:, :2])  # class and distillation tokens kept
    # bicubic with antialiasing, as timm's resample_abs_pos_embed: the 14x14 grid's mean survives the downscale
    assert torch.allclose(model.pos_embed[:, 2:].mean(), before[:, 2:].mean(), atol=2e-3)
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 112, 112)).shape == (1, 1000)
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        model.set_input_size(100)


@pytest.mark.slow
def test_fp32_artifact_matches_timm_through_a_float_input_export(tmp_path):
    """The uint8-input artifact cannot take the reference's float inputs (rounding them to uint8 alone moves the
    logits by more than 1e-4), so the same graph is exported with a float input and run by ONNX Runtime on them:
    within 1e-3 of timm (ONNX Runtime's fused attention and GELU kernels add float32 noise)."""
    import onnxruntime as ort

    from edgevision.bundle import TensorSpec
    from edgevision.graphs import export_onnx

    path = tmp_path / "deit.pth"
    torch.save(stand_in_weights("deit_tiny_distilled_patch16_224"), path)
    model = build_model(get_variant("deit-tiny-distilled"), weights=path)
    onnx_path = tmp_path / "float.onnx"
    export_onnx(model, onnx_path, inputs=[TensorSpec(name="pixels", shape=[1, 3, 224, 224], dtype="float32")],
                output_names=["logits"])
    ref = np.load(REFERENCE / "deit_tiny_distilled_patch16_224.npz")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(["logits"], {"pixels": x[None]})[0] for x in ref["inputs"]])
    assert np.abs(logits - ref["logits"]).max() < 1e-3


def test_classifier_training_resumes_exactly_where_it_stopped(tmp_path):
    """Stopped after 2 steps and resumed to 4, training ends with the weights of an uninterrupted 4-step run."""
    from edgevision.data.shapes import SHAPE_CLASSES
    from edgevision.models.registry import IMAGENET_PLAIN, ModelVariant
    from edgevision.training import train_classifier

    tiny = ModelVariant("vit-test", "edgevision.models.vit:VisionTransformer", "classify", imgsz=32, stride=16,
                        labels=SHAPE_CLASSES, preprocess=IMAGENET_PLAIN,
                        config={"embed_dim": 32, "num_heads": 2, "depth": 2, "img_size": 32})
    kw = {"pool_size": 24, "batch": 8, "lr": 1e-3, "warmup": 2, "log": lambda _: None}
    whole = train_classifier(tiny, steps=4, checkpoint=tmp_path / "a" / "ckpt.pt", **kw)
    train_classifier(tiny, steps=4, stop_after=2, checkpoint=tmp_path / "b" / "ckpt.pt", **kw)  # interrupted
    assert torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)["step"] == 2
    resumed = train_classifier(tiny, steps=4, checkpoint=tmp_path / "b" / "ckpt.pt", **kw)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_corrupt_safetensors_checkpoint_and_a_size_off_the_patch_grid_exit_2(tmp_path, capsys):
    bad = tmp_path / "deit.safetensors"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    assert main(["export", "deit-tiny", "--weights", str(bad), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable .safetensors file" in err[0]
    assert main(["export", "deit-tiny", "--weights", str(bad), "--imgsz", "100", "--out", str(tmp_path / "b")]) == 2
    assert "--imgsz 100: must be a positive multiple of deit-tiny's stride 16" in capsys.readouterr().err


def test_attention_trains_on_the_fused_kernel_and_exports_the_explicit_ops_with_the_same_arithmetic():
    from edgevision.models.vit import Attention

    torch.manual_seed(0)
    attn = Attention(96, 3)
    x = torch.randn(2, 64, 96, requires_grad=True)
    fused = attn.train()(x)
    fused.square().sum().backward()
    fused_grad = x.grad.clone()
    x.grad = None
    explicit = attn.eval()(x)
    explicit.square().sum().backward()
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-5)
    torch.testing.assert_close(fused_grad, x.grad, rtol=0, atol=1e-5)
    def op_kinds(module):
        return {node.kind() for node in torch.jit.trace(module, x.detach(), check_trace=False).graph.nodes()}

    assert "aten::scaled_dot_product_attention" in op_kinds(attn.train())
    exported = op_kinds(attn.eval())
    assert "aten::softmax" in exported and "aten::scaled_dot_product_attention" not in exported
