"""Hook specifications: how plugins add parts to t2c_captum.

Each hook receives a ``register`` callback, the way ``llm`` plugins do, so a plugin never returns values
that the host must merge, and specs can grow new arguments later. A plugin module needs only::

    from t2c_captum import hookimpl

    @hookimpl
    def register_backbones(register):
        register("my-net", make_my_net, description="My network, penultimate layer")

and an entry point in its ``pyproject.toml``::

    [project.entry-points.t2c_captum]
    my_plugin = "my_plugin"
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

__all__ = ["PROJECT_NAME", "Register", "hookimpl", "hookspec"]

PROJECT_NAME = "t2c_captum"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: The callback every registration hook receives: ``register(name, factory, description="")``.
Register = Callable[..., None]


@hookspec
def register_backbones(register: Register) -> None:
    """Register vision backbones.

    :param register: call ``register(name, factory, description="")``; ``factory(**options)`` must
        return a :class:`t2c_captum.backbones.Backbone`. Options come from the user (``pretrained``,
        ``checkpoint``, ``layer``, ``device``...); accept ``**kwargs`` and ignore what you do not use.

    .. versionadded:: 0.1
    """


@hookspec
def register_spaces(register: Register) -> None:
    """Register text-image spaces (CLIP-like models).

    :param register: call ``register(name, factory, description="")``; ``factory(**options)`` must
        return a :class:`t2c_captum.spaces.Space`.

    .. versionadded:: 0.1
    """


@hookspec
def register_aligners(register: Register) -> None:
    """Register aligner kinds (how a map from backbone features to a space is fitted).

    :param register: call ``register(name, cls, description="")``; ``cls(**hyperparameters)`` must
        return an unfitted :class:`t2c_captum.aligners.Aligner`.

    .. versionadded:: 0.1
    """


@hookspec
def register_probes(register: Register) -> None:
    """Register fitted concept probes: an aligner already fitted for one backbone, layer and space.

    :param register: call ``register(name, loader, description="")``; ``loader()`` must return a
        fitted :class:`t2c_captum.aligners.Aligner` (typically ``Aligner.load(path)``) or a
        :class:`t2c_captum.Probe` (to give the probe its own vocabulary or caption decoder). The name
        then works wherever an aligner path does: ``t2c_captum.load_probe(name)``, ``load_aligner``
        and every command (``t2c concepts NAME --data ...``).

    .. versionadded:: 0.1
    """


@hookspec
def register_concept_vocabularies(register: Register) -> None:
    """Register concept vocabularies: named lists of concept texts.

    :param register: call ``register(name, loader, description="")``; ``loader()`` returns a list of
        concept strings, or a dict concept → prompts when the plugin knows how each concept is best
        described to its space.

    .. versionadded:: 0.1
    """


@hookspec
def register_decoders(register: Register) -> None:
    """Register caption decoders: turn embeddings of a space into text (concept-to-text).

    :param register: call ``register(name, loader, description="")``; ``loader(**options)`` must
        return a caption decoder (see :class:`t2c_captum.decoders.CaptionDecoder`: ``decode``,
        ``embed_dim``, ``space_identity``), typically ``PrefixDecoder.load(path)`` or
        ``load_clipcap(path, gpt=...)``. Accept ``**kwargs`` and ignore what you do not use.

    .. versionadded:: 0.2
    """


@hookspec
def register_sources(register: Register) -> None:
    """Register image-source schemes: ``SCHEME:REST`` data specs (``world:test:shape:50``).

    :param register: call ``register(scheme, opener, description="")``; ``opener(rest, **options)``
        must return a :class:`t2c_captum.data.ImageSource` for the text after ``SCHEME:``. The spec
        then works wherever images are given (``--data SCHEME:...``, ``open_source``).

    .. versionadded:: 0.2
    """


@hookspec
def register_caption_corpora(register: Register) -> None:
    """Register caption corpora: named lists of captions to train a caption decoder on
    (``t2c decoder train SPACE --corpus NAME``).

    :param register: call ``register(name, loader, description="")``; ``loader(**options)`` returns
        a list of caption strings. Options a caller may pass: ``n_samples`` (how many items to draw
        the captions from). Accept ``**kwargs`` and ignore what you do not use.

    .. versionadded:: 0.2
    """
