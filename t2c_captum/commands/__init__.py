"""Sub-commands of ``t2c`` that build on aligners and concept banks.

Each module defines ``register(app)`` and is picked up by :mod:`t2c_captum.cli`, which also takes
from here the console, the error boundary and the flags it shares with the sub-commands.
"""

from ._common import (
    JsonOpt,
    LayerOpt,
    PretrainedOpt,
    SpaceWeightsOpt,
    WeightsOpt,
    extraction_options,
    load_models,
)
from ._console import ErrorBoundary, console

__all__ = [
    "ErrorBoundary",
    "JsonOpt",
    "LayerOpt",
    "PretrainedOpt",
    "SpaceWeightsOpt",
    "WeightsOpt",
    "console",
    "extraction_options",
    "load_models",
]
