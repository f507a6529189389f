"""The Backbone: a frozen vision model that maps preprocessed images to feature vectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._exceptions import ConfigurationError, DimensionMismatchError

__all__ = ["Backbone", "ModuleBackbone", "last_linear_name", "pool_features"]

Preprocess = Callable[[Any], torch.Tensor]


def pool_features(out: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """Turn a layer output into ``[N, d]``.

    ``[N, C, H, W]`` maps are pooled over space (``"avg"`` or ``"max"``); ``[N, T, C]`` token sequences
    are averaged (``"avg"``), max-pooled or reduced to their first token (``"cls"``); anything else is
    flattened.
    """
    if pool not in {"avg", "max", "cls", "flatten"}:
        raise ConfigurationError(f"pool must be avg, max, cls or flatten, got {pool!r}")
    if out.dim() == 2 or pool == "flatten":
        return out.flatten(1)
    if out.dim() == 4:
        if pool == "cls":
            raise ConfigurationError("pool='cls' needs a token sequence [N, T, C], got a spatial map")
        return out.amax(dim=(2, 3)) if pool == "max" else out.mean(dim=(2, 3))
    if out.dim() == 3:
        if pool == "cls":
            return out[:, 0]
        return out.amax(dim=1) if pool == "max" else out.mean(dim=1)
    return out.flatten(1)


def last_linear_name(model: nn.Module) -> str | None:
    """Name of the last ``nn.Linear`` submodule (the usual classifier head), if any."""
    names = [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    return names[-1] if names else None


class Backbone(nn.Module):
    """A frozen vision model seen as ``images -> features [N, d]``.

    Subclasses implement :meth:`forward`. Every backbone carries its own ``preprocess`` (PIL image →
    tensor), an ``identity`` that keys feature stores and artifacts, and optionally its classifier
    ``head`` (features → logits) with ``class_names``.

    Args:
        name (str): a stable identifier, e.g. ``"timm:resnet50"``.
        preprocess (callable): PIL image → ``[3, H, W]`` tensor, from timm / torchvision data configs.
        layer (str, optional): the layer the features come from. Default: ``"penultimate"``
        head (nn.Module, optional): the model's own classifier on these features. Default: ``None``
        class_names (list of str, optional): names of the head's outputs. Default: ``None``
        input_size (tuple, optional): ``(3, H, W)`` the model expects. Default: ``(3, 224, 224)``
    """

    def __init__(
        self,
        name: str,
        preprocess: Preprocess,
        *,
        layer: str | None = None,
        head: nn.Module | None = None,
        class_names: list[str] | None = None,
        input_size: tuple[int, int, int] = (3, 224, 224),
    ) -> None:
        super().__init__()
        self.name = name
        self.preprocess = preprocess
        self.layer = layer or "penultimate"
        self.head = head
        self.class_names = class_names
        self.input_size = tuple(input_size)
        self._feature_dim: int | None = None
        #: more identity fields (e.g. a digest of the weights), so caches follow weight changes
        self.identity_extra: dict[str, Any] = {}

    @property
    def feature_dim(self) -> int:
        """Size of the feature vector (found with one dummy forward pass, then cached)."""
        if self._feature_dim is None:
            param = next(self.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            with torch.no_grad():
                out = self(torch.zeros(1, *self.input_size, device=device))
            self._feature_dim = int(out.shape[-1])
        return self._feature_dim

    @property
    def identity(self) -> dict[str, Any]:
        """What makes these features these features: model id, layer, preprocessing and size."""
        return {
            "id": self.name,
            "layer": self.layer,
            "preprocess": " ".join(repr(self.preprocess).split()),
            "feature_dim": self.feature_dim,
            **self.identity_extra,
        }

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Apply the backbone's own classifier head to features."""
        if self.head is None:
            raise ConfigurationError(
                f"backbone {self.name!r} (layer {self.layer!r}) has no classifier head; "
                "own-head accuracy needs the penultimate layer of a model with a head"
            )
        if features.shape[-1] != self.feature_dim:
            raise DimensionMismatchError(
                f"the head of {self.name!r} takes {self.feature_dim}-d features, got {features.shape[-1]}-d"
            )
        head_param = next(self.head.parameters(), None)
        if head_param is not None:  # the head may be on a GPU (extraction moves the model there)
            features = features.to(head_param.device, head_param.dtype)
        return self.head(features)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layer={self.layer!r}"


class _StopForward(Exception):
    """Raised from a hook once the wanted layer has run, to skip the rest of the network."""


class ModuleBackbone(Backbone):
    """Any ``nn.Module`` plus a layer name, the layer captured by a forward hook.

    Spatial maps ``[N, C, H, W]`` and token sequences ``[N, T, C]`` are pooled to ``[N, C]`` (see
    :func:`pool_features`). With ``layer=None`` the features are the *input* of the last
    ``nn.Linear`` (the penultimate representation), and that linear layer becomes the ``head``.

    Args:
        model (nn.Module): the network; it is put in eval mode and its parameters frozen.
        name (str): identifier used in feature stores and artifacts.
        preprocess (callable): PIL image → tensor.
        layer (str, optional): a name from ``model.named_modules()``. Default: penultimate
        pool (str, optional): ``"avg"``, ``"max"``, ``"cls"`` or ``"flatten"``. Default: ``"avg"``
        class_names (list of str, optional): names of the head's outputs. Default: ``None``
        input_size (tuple, optional): ``(3, H, W)``. Default: ``(3, 224, 224)``
    """

    def __init__(
        self,
        model: nn.Module,
        name: str,
        preprocess: Preprocess,
        *,
        layer: str | None = None,
        pool: str = "avg",
        class_names: list[str] | None = None,
        input_size: tuple[int, int, int] = (3, 224, 224),
    ) -> None:
        modules = dict(model.named_modules())
        head: nn.Module | None = None
        capture_input = layer is None
        if layer is None:
            layer = last_linear_name(model)
            if layer is None:
                raise ConfigurationError(
                    f"{name}: no layer given and the model has no nn.Linear head to take the "
                    f"penultimate features from; pass layer=one of {list(modules)[1:8]}..."
                )
            head = modules[layer]
        elif layer not in modules:
            from .._exceptions import UnknownNameError

            raise UnknownNameError("layer", layer, [n for n in modules if n], f"(layers of {name})")
        super().__init__(
            name,
            preprocess,
            layer=layer if not capture_input else "penultimate",
            head=head,
            class_names=class_names,
            input_size=input_size,
        )
        self.model = model.eval().requires_grad_(False)
        self.pool = pool
        self._target_name = layer
        self._capture_input = capture_input
        self._captured: torch.Tensor | None = None
        self._active = False
        target = modules[layer]
        if capture_input:
            target.register_forward_pre_hook(self._pre_hook)
        else:
            target.register_forward_hook(self._hook)

    @property
    def hooked_layer(self) -> str:
        """The model's submodule (its name) the features are taken from."""
        return self._target_name

    @property
    def captures_input(self) -> bool:
        """Whether the features are the hooked layer's input (the head's, "penultimate") rather
        than its output."""
        return self._capture_input

    def _pre_hook(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._active:  # the wrapped model may also be used on its own
            self._captured = args[0]
            raise _StopForward

    def _hook(self, _module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
        if self._active:
            self._captured = output[0] if isinstance(output, tuple) else output
            raise _StopForward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of preprocessed images ``x`` as ``[N, d]``."""
        self._captured, self._active = None, True
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            self._active = False
        captured, self._captured = self._captured, None
        if captured is None:
            raise ConfigurationError(
                f"layer {self._target_name!r} of {self.name!r} did not run in forward; "
                "pass layer= a module the forward calls"
            )
        return pool_features(captured, self.pool)

    def train(self, mode: bool = True) -> ModuleBackbone:
        """Backbones stay frozen: the wrapped model is kept in eval mode."""
        super().train(mode)
        self.model.eval()
        return self
