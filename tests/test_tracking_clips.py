"""Synthetic tracking clips: deterministic, exact visible masks, and the events the tracker must survive."""

from __future__ import annotations

import numpy as np
import pytest

from edgevision.data.tracking_clips import ClipSpec, clip_seeds, render_clip


def test_clips_are_deterministic_and_masks_are_exact():
    a, b = render_clip(5), render_clip(5)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    t, k, s, _ = a.masks.shape
    assert a.frames.shape == (t, s, s, 3) and t == ClipSpec().length and k == len(a.classes)
    # visible masks never overlap: a pixel shows one object at most
    assert a.masks.sum(1).max() <= 1
    # the target is prompted on frame 0 with its tight box
    x0, y0, x1, y1 = a.target_box()
    ys, xs = np.nonzero(a.masks[0, 0])
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_every_event_occurs_and_does_what_it_says():
    seen = {"occluder": 0, "leaves": 0, "distractor": 0}
    for seed in range(16):
        clip = render_clip(seed)
        visible = clip.masks[:, 0].sum((1, 2))
        assert visible[0] >= 30
        for event, present in clip.events.items():
            seen[event] += present
        if clip.events["leaves"]:
            gone = np.flatnonzero(visible == 0)
            assert len(gone) and visible[-1] > 0, "the target leaves and comes back"
        if clip.events["occluder"]:
            assert visible.min() < 0.8 * visible.max()
        if clip.events["distractor"]:
            assert (clip.classes[1:] == clip.classes[0]).any()
    assert all(v >= 2 for v in seen.values()), seen


def test_seed_splits_are_disjoint():
    train, val, ev = (set(clip_seeds(s, 1000)) for s in ("train", "val", "eval"))
    assert not (train & val or train & ev or val & ev)
    with pytest.raises(ValueError, match="split"):
        clip_seeds("test", 1)


def test_long_clips_bounce_their_objects_off_the_edges():
    """A 200-frame clip without bounce loses objects off the frame for good; with bounce (the drift check's long
    clips) every object but the occluder, which crosses once, stays in view nearly all the time."""
    seed = 20_000_002
    drifting = render_clip(seed, ClipSpec(length=200))
    bouncing = render_clip(seed, ClipSpec(length=200, bounce=True))
    seen = lambda clip: clip.masks.reshape(200, clip.masks.shape[1], -1).any(-1).mean(0)  # noqa: E731
    assert seen(drifting)[:-1].min() < 0.5
    assert seen(bouncing)[:-1].min() >= 0.9  # the last object is the occluder
    assert np.array_equal(bouncing.frames[0], drifting.frames[0])  # the same scene, only the paths differ
