"""Label-free concept bottleneck models: a sparse linear classifier on concept activations.

A backbone's features are mapped into a CLIP space by an aligner and scored against a
:class:`~t2c_captum.concepts.ConceptBank` (cosines, :func:`~t2c_captum.concepts.concept_scores`). The
scores, standardised on the training set, are the only inputs of an L1 (or elastic-net) multinomial
logistic regression, so every logit is a short sum of per-concept contributions plus an intercept.
The sparsity is chosen on validation data along a regularisation path, and a dense linear probe on the
same backbone features is fitted next to it for comparison.
"""

from .features import labelled_features
from .model import ConceptBottleneck
from .reports import CBMReport, Explanation, PathPoint

__all__ = ["CBMReport", "ConceptBottleneck", "Explanation", "PathPoint", "labelled_features"]
