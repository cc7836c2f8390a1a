import random

from anygpt.eval.scene_checker import check_scene, read_scene


def test_reads_rendered_scenes_exactly():
    from anygpt.data import scenes

    rng = random.Random(11)
    for i in range(120):
        spec = scenes.sample_scene(rng)
        size = (64, 128)[i % 2]
        res = check_scene(scenes.render_scene(spec, size=size), scenes.attributes(spec))
        assert res["exact"], (spec, res["read"])


def test_detects_wrong_attributes_and_accepts_tensors():
    import numpy as np
    import torch

    from anygpt.data import scenes

    spec = scenes.SceneSpec("white", (scenes.SceneObject("circle", "red", "large", "top-left"),
                                      scenes.SceneObject("star", "blue", "small", "bottom-right")))
    img = scenes.render_scene(spec, size=64)
    truth = scenes.attributes(spec)
    tensor = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
    assert check_scene(tensor, truth)["exact"]
    other = scenes.attributes(scenes.SceneSpec("white", (scenes.SceneObject("square", "red", "large", "top-left"),)))
    res = check_scene(img, other)
    assert not res["exact"] and not res["shape"] and not res["count"]
    blank = scenes.render_scene(scenes.SceneSpec("gray", ()), size=64)
    assert read_scene(blank) == {"background": "gray", "n_objects": 0, "objects": [], "counts": {}}


def test_a_few_levels_of_noise_leave_the_reading_unchanged():
    """Objects in the middle row and column have their edges on half pixels (coverage exactly
    0.5): thresholding the pixels themselves read a square there as a circle after a change of
    a few levels, which is what a good reconstruction has."""
    import numpy as np

    from anygpt.data import scenes

    rng, noise = random.Random(5), np.random.default_rng(5)
    for _ in range(60):
        spec = scenes.sample_scene(rng)
        img = np.asarray(scenes.render_scene(spec, size=64), dtype=np.float32)
        noisy = np.clip(img + noise.uniform(-8, 8, img.shape), 0, 255).round().astype(np.uint8)
        res = check_scene(noisy, scenes.attributes(spec))
        assert res["exact"], (spec, res["read"])
    middle = scenes.SceneSpec("white", tuple(scenes.SceneObject(shape, "red", "small", pos)
                                             for shape, pos in zip(scenes.SHAPES, ("center", "top", "left", "bottom"))))
    img = np.asarray(scenes.render_scene(middle, size=64), dtype=np.float32)
    for seed in range(10):
        noisy = np.clip(img + np.random.default_rng(seed).uniform(-8, 8, img.shape), 0, 255).round().astype(np.uint8)
        assert check_scene(noisy, scenes.attributes(middle))["exact"]
