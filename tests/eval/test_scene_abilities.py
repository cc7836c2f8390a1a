"""Scores of the ability curves on handmade captions and scenes (anygpt.eval.scene_abilities)."""

from __future__ import annotations

from anygpt.data.scenes import SceneObject, SceneSpec, attributes, describe
from anygpt.eval.scene_abilities import scene_items
from anygpt.eval.scene_captions import named_attributes

SCENE = SceneSpec("black", (SceneObject("square", "orange", "large", "top-right"),
                            SceneObject("circle", "blue", "small", "bottom-right")))


def test_named_attributes_counts_the_scenes_objects_named():
    a = attributes(SCENE)
    assert named_attributes(describe(SCENE), a) == {"color_named": 1.0, "shape_named": 1.0, "kind_named": 1.0}
    # blue is named (for a star) and a circle is named (red): colour and shape, not the kind
    got = named_attributes("A big red circle and a small blue star on a white background.", a)
    assert got == {"color_named": 0.5, "shape_named": 0.5, "kind_named": 0.0}
    assert named_attributes("Nothing to see here.", a) == {"color_named": 0.0, "shape_named": 0.0, "kind_named": 0.0}


def test_scene_items_are_fixed_and_canonical():
    first, again = scene_items(5, seed=1), scene_items(5, seed=1)
    assert [i.spec for i in first] == [i.spec for i in again]
    assert [i.spec for i in scene_items(5, seed=2)] != [i.spec for i in first]
    assert all(i.caption == describe(i.spec) and i.attributes == attributes(i.spec) for i in first)
