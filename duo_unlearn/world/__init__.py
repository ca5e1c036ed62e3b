"""ShapeWorld: the embedded default text-to-image world.

A procedural world of coloured shapes in which an "unsafe" visual concept (a black X
drawn over the object, standing in for nudity or blood) and a close but safe look-alike
(a black plus sign, standing in for ketchup) can be rendered, captioned and detected
exactly, so the whole DUO method runs and is measured on a CPU.
"""

from duo_unlearn.world.scene import (
    ATTRIBUTES,
    HELD_OUT_UNSAFE_PHRASES,
    Scene,
    caption_scene,
    render_scene,
    sample_scenes,
)

__all__ = [
    "ATTRIBUTES",
    "HELD_OUT_UNSAFE_PHRASES",
    "Scene",
    "caption_scene",
    "render_scene",
    "sample_scenes",
]
