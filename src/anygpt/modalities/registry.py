"""The modality registry: a new modality is one module that calls `register_modality`.

Registration order is vocabulary order (the release adds image, then speech, then music).
Tokenizer loaders are registered by name per modality ("released", "compact", ...) so that the
model loader can build whichever tokenizers a checkpoint names. A loader is a function, or the
string "package.module:function" imported when the tokenizer is first loaded (so registering
costs nothing and the registry imports no tokenizer code).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

from anygpt.errors import UnknownModalityError, UsageError
from anygpt.modalities.base import ModalityTokenizer
from anygpt.token_spec import TokenSpec

TokenizerLoader = Callable[..., ModalityTokenizer]


@dataclass
class ModalityInfo:
    """What the rest of anygpt knows about one modality.

    kind: "text", "audio" or "image". released_spec: the spec of the released AnyGPT's codes
    (None for text, or for a modality the release does not have). tokenizer_loaders: name ->
    loader (a function or "module:function").
    """

    name: str
    kind: str
    released_spec: TokenSpec | None
    file_extensions: tuple[str, ...] = ()
    tokenizer_loaders: dict[str, TokenizerLoader | str] = field(default_factory=dict)


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


def register_tokenizer(modality: str, name: str, loader: TokenizerLoader | str) -> None:
    """Make `loader(**kwargs) -> ModalityTokenizer` available as tokenizer `name` of `modality`.
    loader: a function or "package.module:function"."""
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
    loader = info.tokenizer_loaders.get(name)
    if loader is None:
        raise UnknownModalityError(
            f"modality {modality!r} has no tokenizer {name!r}; available: "
            f"{', '.join(info.tokenizer_loaders) or 'none yet'}"
        )
    if isinstance(loader, str):
        module, _, function = loader.partition(":")
        loader = getattr(importlib.import_module(module), function)
    try:
        inspect.signature(loader).bind(**kwargs)
    except TypeError as e:
        options = ", ".join(p for p in inspect.signature(loader).parameters if p not in ("_", "kwargs"))
        raise UsageError(f"{modality} tokenizer {name!r}: {e}; its options: {options or 'none'}") from None
    return loader(**kwargs)
