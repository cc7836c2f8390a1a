"""The modality registry: a new modality is one module that calls `register_modality`.

Registration order is vocabulary order (the release adds image, then speech, then music).
Tokenizer loaders are registered by name per modality ("released", "tiny", ...) so that the
model loader can build whichever tokenizers a checkpoint names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from anygpt.errors import UnknownModalityError
from anygpt.modalities.base import ModalityTokenizer, TokenSpec

TokenizerLoader = Callable[..., ModalityTokenizer]


@dataclass
class ModalityInfo:
    """What the rest of anygpt knows about one modality.

    kind: "text", "audio" or "image". released_spec: the spec of the released AnyGPT's codes
    (None for text, or for a modality the release does not have).
    """

    name: str
    kind: str
    released_spec: TokenSpec | None
    file_extensions: tuple[str, ...] = ()
    tokenizer_loaders: dict[str, TokenizerLoader] = field(default_factory=dict)


_REGISTRY: dict[str, ModalityInfo] = {}


def register_modality(info: ModalityInfo, *, replace: bool = False) -> ModalityInfo:
    if info.name in _REGISTRY and not replace:
        raise ValueError(f"modality {info.name!r} is already registered (pass replace=True)")
    if info.kind not in ("text", "audio", "image"):
        raise ValueError(f"modality {info.name!r}: kind must be text, audio or image, not {info.kind!r}")
    _REGISTRY[info.name] = info
    return info


def unregister_modality(name: str) -> None:
    _REGISTRY.pop(name, None)


def register_tokenizer(modality: str, name: str, loader: TokenizerLoader) -> None:
    """Make `loader(**kwargs) -> ModalityTokenizer` available as tokenizer `name` of `modality`."""
    get_modality(modality).tokenizer_loaders[name] = loader


def get_modality(name: str) -> ModalityInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModalityError(
            f"unknown modality {name!r}; registered: {', '.join(_REGISTRY) or 'none'}"
        ) from None


def modality_names(*, with_text: bool = False) -> list[str]:
    """Registered modality names in vocabulary order."""
    return [n for n, m in _REGISTRY.items() if with_text or m.kind != "text"]


def released_specs() -> list[TokenSpec]:
    """Specs of the released AnyGPT's modalities, in vocabulary order."""
    return [m.released_spec for m in _REGISTRY.values() if m.released_spec is not None]


def load_tokenizer(modality: str, name: str, **kwargs) -> ModalityTokenizer:
    info = get_modality(modality)
    if name not in info.tokenizer_loaders:
        raise UnknownModalityError(
            f"modality {modality!r} has no tokenizer {name!r}; available: "
            f"{', '.join(info.tokenizer_loaders) or 'none yet'}"
        )
    return info.tokenizer_loaders[name](**kwargs)
