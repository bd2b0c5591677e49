"""Postprocessor registry, keyed by the ``head.kind`` a bundle records.

A new head (classification logits, SAM masks, ...) is a new class plus one line here.
"""

from __future__ import annotations

import importlib

POSTPROCESSORS = {
    "yolov1": "edgevision.ops.yolo:YoloV1Postprocessor",
    "semantic": "edgevision.ops.masks:SemanticPostprocessor",
}


def make_postprocessor(head: dict, imgsz: int, **options):
    try:
        module, _, cls = POSTPROCESSORS[head["kind"]].partition(":")
    except KeyError:
        raise ValueError(f"no postprocessor for head kind '{head.get('kind')}'; known: {', '.join(POSTPROCESSORS)}")
    return getattr(importlib.import_module(module), cls)(head, imgsz, **options)
