"""Quantization-aware fine-tuning helper: simulates the symmetric INT8 scheme and leaves plain float weights."""

import torch

from edgevision.models.registry import get_variant
from edgevision.training import enable_int8_simulation


def test_int8_simulation_quantizes_while_on_and_leaves_plain_weights():
    torch.manual_seed(0)
    model = get_variant("fast-yolo-demo").build().eval()
    keys = list(model.state_dict())
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        ref = model.forward_raw(x)
        remove = enable_int8_simulation(model)
        sim = model.forward_raw(x)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        w = conv.weight  # the parametrized (fake-quantized) weight: at most 255 levels per output channel
        assert all(len(torch.unique(w[c])) <= 255 for c in range(w.shape[0]))
        remove()
        after = model.forward_raw(x)
    assert sorted(model.state_dict()) == sorted(keys)
    assert torch.equal(after, ref)  # the simulation is gone and the float weights are untouched
    err = (sim - ref).abs().max().item()
    assert 0 < err < 0.5 * ref.abs().max().item()  # int8 noise, not a different network
