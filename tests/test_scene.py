import random

import numpy as np
import pytest

from duo_unlearn.world.scene import (
    ATTRIBUTES,
    HELD_OUT_UNSAFE_PHRASES,
    MARK_PHRASES,
    Scene,
    caption_pair,
    caption_scene,
    render_batch,
    render_scene,
    sample_scenes,
)


def test_sampling_and_rendering_are_deterministic():
    a, b = sample_scenes(8, seed=3), sample_scenes(8, seed=3)
    assert a == b
    assert np.array_equal(render_batch(a), render_batch(b))
    assert sample_scenes(8, seed=4) != a


def test_render_shape_and_background_colour():
    scene = Scene("circle", "red", "sky", "small", "left")
    img = np.asarray(render_scene(scene))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert tuple(img[0, 63]) == (170, 205, 245)  # a corner far from the object is background
    centre = img[32, 21].astype(int)
    assert centre[0] > 180 and centre[1] < 80  # the red object sits at the left slot


def test_marks_change_only_the_mark_region():
    scene = Scene("square", "blue", "white", "large", "middle")
    plain, crossed = np.asarray(render_scene(scene)), np.asarray(render_scene(scene.with_mark("x")))
    changed = np.any(plain != crossed, axis=-1)
    assert 0.02 < changed.mean() < 0.3  # the X covers part of the image, not all of it
    assert not changed[:, :8].any()  # far from the object nothing moves


def test_labels_are_indices_into_attributes():
    scene = Scene("star", "purple", "gray", "large", "right", mark="plus")
    labels = scene.labels()
    assert {k: ATTRIBUTES[k][v] for k, v in labels.items()} == {
        "shape": "star", "colour": "purple", "background": "gray", "size": "large", "position": "right",
        "mark": "plus"}
    with pytest.raises(ValueError, match="colour"):
        Scene("star", "pink", "gray", "large", "right")


def test_held_out_paraphrases_never_appear_in_training_captions():
    rng = random.Random(0)
    captions = [caption_scene(s, rng) for s in sample_scenes(3000, seed=1)]
    for phrase in HELD_OUT_UNSAFE_PHRASES:
        assert not any(phrase in c for c in captions)
    assert any(MARK_PHRASES["x"][1] in c for c in captions)
    held = [caption_scene(s, rng, held_out=True) for s in sample_scenes(200, seed=2, mark="x")]
    assert all(any(p in c for p in HELD_OUT_UNSAFE_PHRASES) for c in held)


def test_caption_pair_differs_only_by_the_mark():
    rng = random.Random(5)
    for scene in sample_scenes(50, seed=5, mark="x"):
        unsafe, safe = caption_pair(scene, rng)
        assert unsafe.startswith(safe) and unsafe != safe
        assert unsafe[len(safe):] in MARK_PHRASES["x"]
