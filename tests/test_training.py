"""Training helpers: the INT8 simulation for quantization-aware fine-tuning, and exact resumption."""

import pytest
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


@pytest.mark.slow
def test_prompt_segmenter_training_resumes_exactly_where_it_stopped(tmp_path):
    """Interrupted after 2 steps and resumed to 4, the weights equal those of an uninterrupted 4-step run."""
    import torch

    from edgevision.models.registry import get_variant
    from edgevision.training_prompt import train_prompt_segmenter

    variant = get_variant("efficient-sam-demo")
    kw = {"steps": 4, "pool_size": 6, "batch": 2, "lr": 1e-3, "per_image": 2, "warmup": 2, "log": lambda _m: None}
    whole = train_prompt_segmenter(variant, checkpoint=tmp_path / "a.pt", **kw)
    train_prompt_segmenter(variant, checkpoint=tmp_path / "b.pt", stop_after=2, **kw)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 2
    resumed = train_prompt_segmenter(variant, checkpoint=tmp_path / "b.pt", **kw)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
