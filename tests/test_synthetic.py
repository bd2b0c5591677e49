import numpy as np
import pytest

from edgevision.data.synthetic import SHAPE_CLASSES, SceneSpec, render_scene, scene_seeds


def test_same_seed_same_scene_and_different_seed_differs():
    a, b, c = render_scene(5), render_scene(5), render_scene(6)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("spec", [SceneSpec(), SceneSpec(size=(256, 256), grid=8, letterbox_prob=0.5)])
def test_scene_constraints_hold_on_many_scenes(spec):
    h, w = spec.size
    counts = set()
    for seed in range(150):
        s = render_scene(seed, spec)
        n = len(s.labels)
        counts.add(n)
        assert spec.min_objects <= n <= spec.max_objects
        assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
        assert s.masks.shape == (n, h, w)
        assert set(s.labels.tolist()) <= set(range(len(SHAPE_CLASSES)))
        cells = set()
        for box, mask in zip(s.boxes, s.masks):
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            # boxes are the exact extents of the visible mask
            assert box.tolist() == [xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            cells.add((int(cy / h * spec.grid), int(cx / w * spec.grid)))
            # at most 60 % of the side (the visible part can only be smaller than the drawn shape)
            assert max(box[2] - box[0], box[3] - box[1]) <= spec.max_frac * min(h, w) + 2
        assert len(cells) == n, "two object centres share a grid cell"
        # masks are disjoint and the semantic map agrees with them
        assert s.masks.sum(0).max() <= 1
        sem = s.semantic()
        for label, mask in zip(s.labels, s.masks):
            assert (sem[mask] == label + 1).all()
    assert len(counts) >= 5  # the object count really varies


def test_occlusion_never_hides_more_than_half():
    occluded = 0
    for seed in range(80):
        s = render_scene(seed)
        for visible, full in zip(s.masks.sum((1, 2)), s.meta["full_area"]):
            assert visible >= 0.5 * full
            occluded += visible < full
    assert occluded > 10  # occlusion really happens


def test_sizes_span_the_range():
    sides = []
    for seed in range(200):
        s = render_scene(seed)
        sides += [max(b[2] - b[0], b[3] - b[1]) / 224 for b in s.boxes]
    assert min(sides) < 0.08 and max(sides) > 0.45


def test_scene_seeds_do_not_overlap_between_sets():
    assert not set(scene_seeds(1, 500)) & set(scene_seeds(2, 500))
