import pytest
import torch

from edgevision.errors import BadInput
from edgevision.models.loading import build_model, read_state_dict
from edgevision.models.registry import get_variant, list_variants


def test_every_variant_builds_and_has_the_documented_output_shape():
    for v in list_variants():
        m = v.build().eval()
        if v.task == "prompt-segment":  # at 256 px (a 16 x 16 grid) to keep the test quick; one prompt
            m.set_input_size(256)
            with torch.no_grad():
                masks, iou = m(torch.zeros(1, 3, 256, 256), torch.full((1, 6, 2), 100.0), torch.ones(1, 6))
            assert masks.shape == (1, 3, 64, 64) and iou.shape == (1, 3)
            continue
        if v.task == "track":  # at 256 px: a frame encoded, a box decoded, the mask encoded as memory
            m.set_input_size(256)
            with torch.no_grad():
                f, s0, s1 = m.encode_image(torch.zeros(1, 3, 256, 256))
                masks, iou, ptrs, score = m.decode(m.without_memory(f), s0, s1,
                                                   torch.tensor([[[10.0, 10.0], [100.0, 100.0]]]),
                                                   torch.tensor([[2.0, 3.0]]))
                memory = m.encode_memory(f, masks[:, :1], torch.ones(1, 1), score)
            assert masks.shape == (1, 4, 64, 64) and iou.shape == (1, 4) and score.shape == (1, 1)
            assert ptrs.shape == (1, 4, m.dim) and memory.shape == (1, m.mem_dim, m.memory_grid, m.memory_grid)
            continue
        with torch.no_grad():
            y = m(torch.zeros(1, 3, v.imgsz, v.imgsz))
        if v.task == "detect":
            s = v.imgsz // v.stride
            assert y.shape == (1, s, s, 2 * 5 + len(v.labels))
            assert float(y.min()) >= 0 and float(y.max()) <= 1  # activated head
        elif v.task == "classify":
            assert y.shape == (1, len(v.labels))  # logits
        else:
            assert y.shape == (1, len(v.labels), v.imgsz, v.imgsz)


def test_fast_yolo_is_the_papers_nine_conv_network():
    m = get_variant("fast-yolo").build()
    convs = [mod for mod in m.features.modules() if isinstance(mod, torch.nn.Conv2d)]
    bns = [mod for mod in m.features.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    leaky = [mod for mod in m.features.modules() if isinstance(mod, torch.nn.LeakyReLU)]
    assert len(convs) == len(bns) == len(leaky) == 9
    assert all(mod.negative_slope == 0.1 for mod in leaky)
    assert m.head_spec(448) == {"kind": "yolov1", "grid": 7, "boxes_per_cell": 2, "num_classes": 20,
                                "sqrt_wh": True}


def test_bundled_weights_load_strictly():
    for v in list_variants():
        if v.has_weights:
            build_model(v)  # raises on any key or shape mismatch


def test_missing_weights_file(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        read_state_dict(tmp_path / "nope.pt")


def test_corrupt_weights_file(tmp_path):
    p = tmp_path / "corrupt.pt"
    p.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(BadInput, match="corrupt.pt: not a readable PyTorch checkpoint"):
        read_state_dict(p)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, p)
    with pytest.raises(BadInput, match="not a readable PyTorch checkpoint"):
        read_state_dict(p)


def test_mismatched_keys_list_the_first_few(tmp_path):
    p = tmp_path / "other.pt"
    torch.save({"backbone.conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(1)}, p)
    with pytest.raises(BadInput, match=r"keys do not match.*missing \d+ \(e.g. features.0.0.weight.*unexpected 2"):
        build_model(get_variant("fast-yolo"), weights=p)


def test_class_count_mismatch_suggests_labels(tmp_path):
    v = get_variant("fast-yolo")
    p = tmp_path / "voc.pt"
    torch.save({"model": v.build().state_dict()}, p)  # wrapped like many training scripts save it
    build_model(v, weights=p)
    with pytest.raises(BadInput, match="shapes do not match.*--labels"):
        build_model(v, weights=p, num_classes=3)


def test_random_weights_are_reproducible():
    v = get_variant("fast-yolo-demo")
    a, b = build_model(v, random_seed=3), build_model(v, random_seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_unknown_model():
    with pytest.raises(BadInput, match="unknown model 'yolo99'"):
        get_variant("yolo99")
