"""Training helpers: the INT8 simulation for quantization-aware fine-tuning, exact resumption, and the tracker's
feature noise."""

import numpy as np
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


def test_feature_noise_sits_at_the_asked_sqnr_in_every_frame():
    from edgevision.training_track import with_feature_noise

    rng = np.random.default_rng(0)
    scales = np.array([0.1, 1, 10, 3], np.float32)[None, :, None, None, None]
    feats = rng.standard_normal((3, 4, 128, 16, 16)).astype(np.float32) * scales
    noisy = with_feature_noise(feats, 40.0, np.random.default_rng(1))
    error = noisy - feats
    sqnr = 10 * np.log10((feats ** 2).sum(axis=(-3, -2, -1)) / (error ** 2).sum(axis=(-3, -2, -1)))
    assert noisy.dtype == np.float32 and np.abs(sqnr - 40).max() < 0.2, sqnr  # per frame, whatever its scale
    assert np.array_equal(noisy, with_feature_noise(feats, 40.0, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="sqnr_db=nan"):
        with_feature_noise(feats, float("nan"), rng)


@pytest.mark.slow
def test_tracker_training_under_feature_noise_is_reproducible_and_resumes_only_with_the_same_noise(tmp_path):
    import torch

    from edgevision.errors import BadInput
    from edgevision.models.registry import get_variant
    from edgevision.training_track import train_tracker

    variant = get_variant("sam-track-demo")
    kw = {"steps": 2, "pool_size": 2, "batch": 1, "lr": 1e-3, "frames": 3, "warmup": 1, "extra_prompts": 1,
          "log": lambda _m: None}
    plain = train_tracker(variant, checkpoint=tmp_path / "plain.pt", **kw).state_dict()
    noisy = train_tracker(variant, checkpoint=tmp_path / "a.pt", feature_noise_db=30.0, **kw).state_dict()
    again = train_tracker(variant, checkpoint=tmp_path / "b.pt", feature_noise_db=30.0, **kw).state_dict()
    assert all(torch.equal(noisy[k], again[k]) for k in noisy)  # reproducible by seed
    assert any(not torch.equal(noisy[k], plain[k]) for k in noisy)  # and the noise reached the training
    assert torch.load(tmp_path / "a.pt", weights_only=True)["feature_noise_db"] == 30.0
    with pytest.raises(BadInput, match="feature noise 30.0 dB, not None"):
        train_tracker(variant, checkpoint=tmp_path / "a.pt", **{**kw, "steps": 3})
