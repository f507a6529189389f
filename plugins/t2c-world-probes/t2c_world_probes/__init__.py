"""Fitted concept probes for the concept world, shipped as package data and registered by name.

``world-cnn-probe`` reads the shape-trained CNN (``world-cnn``, penultimate layer) in the tiny
CLIP's space (``world-clip``); ``world-cnn-shapes`` is the same aligner with the six shape names as
its vocabulary. Both work wherever an aligner path does::

    t2c concepts world-cnn-probe --data world:test:shape:50
    python -c "import t2c_captum as t2c; print(t2c.load_probe('world-cnn-shapes'))"

The artifact was written by ``python -m t2c_world_probes.make`` (fits on 3,000 world images).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from t2c_captum import Aligner, hookimpl, load_probe

#: the artifact stem (``world-cnn.json`` + ``world-cnn.safetensors``) inside the package
ARTIFACT = "probes/world-cnn"
SHAPES = ["circle", "square", "triangle", "star", "cross", "hexagon"]


def artifact_path() -> str:
    return str(files(__name__) / ARTIFACT)


def _aligner() -> Aligner:
    return Aligner.load(artifact_path())


def _shapes() -> Any:
    return load_probe(artifact_path(), vocabulary=SHAPES)


@hookimpl
def register_probes(register: Any) -> None:
    register("world-cnn-probe", _aligner, description="world-cnn (penultimate) read in world-clip")
    register("world-cnn-shapes", _shapes, description="world-cnn -> world-clip, named by the six shapes")
