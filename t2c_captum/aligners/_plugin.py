"""Built-in aligner kinds, registered through the same hook as third-party plugins."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from .imported import ImportedAligner
from .linear import LinearAligner
from .sgd import SGDAligner


@hookimpl
def register_aligners(register: Register) -> None:
    register("linear", LinearAligner, description="closed-form ridge from streamed statistics")
    register("sgd", SGDAligner, description="the paper's SGD recipe (baseline)")
    register("imported", ImportedAligner, description="a linear map fitted elsewhere (t2c import-aligner)")
