"""Generation settings (the release's presets and the paper's evaluation settings), their
checks, and the reference path: HF `generate` with the segment constraint as a LogitsProcessor.
The fast path is anygpt.lm.engine.Engine; both read the same GenerationSettings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from anygpt.errors import AnyGPTError
from anygpt.layout import TokenLayout


class GenerationSettingsError(AnyGPTError, ValueError):
    """A generation setting out of its range (e.g. max_new_tokens 0, temperature -1)."""


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 500
    do_sample: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    num_beams: int = 1
    # False reproduces the release: no constraint, malformed segments are possible
    constrained: bool = True
    max_frames: dict[str, int] = field(default_factory=dict)
    # classifier-free guidance of a forced fixed-length media reply (an image): 1 = none; for
    # models trained with some captions dropped (anygpt.lm.guidance)
    cfg_scale: float = 1.0

    def with_(self, **changes) -> "GenerationSettings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check(self) -> "GenerationSettings":
        """Raise GenerationSettingsError naming the first field out of range; return self."""
        def bad(name: str, want: str) -> GenerationSettingsError:
            return GenerationSettingsError(f"generation setting {name}={getattr(self, name)!r}: {want}")

        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise bad("max_new_tokens", "must be a whole number of at least 1")
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0 or self.temperature == float("inf"):
            raise bad("temperature", "must be a finite number above 0 (use do_sample=False for greedy)")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad("top_k", "must be a whole number >= 0 (0: no top-k filter)")
        if not isinstance(self.repetition_penalty, (int, float)) or not 0 < self.repetition_penalty < float("inf"):
            raise bad("repetition_penalty", "must be a finite number above 0 (1.0: none)")
        if isinstance(self.num_beams, bool) or not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise bad("num_beams", "must be a whole number of at least 1")
        if isinstance(self.cfg_scale, bool) or not isinstance(self.cfg_scale, (int, float)) \
                or not 0 < self.cfg_scale < float("inf"):
            raise bad("cfg_scale", "must be a finite number above 0 (1.0: no guidance)")
        for name, n in self.max_frames.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise GenerationSettingsError(f"generation setting max_frames[{name!r}]={n!r}: must be a whole "
                                              "number >= 0 (0: no segment of that modality)")
        return self


# The release's config/*_generate_config.json values, and the paper's evaluation settings.
GENERATION_PRESETS: dict[str, GenerationSettings] = {
    "text": GenerationSettings(max_new_tokens=500),
    "image": GenerationSettings(max_new_tokens=200),
    "speech": GenerationSettings(max_new_tokens=1500, repetition_penalty=1.05),
    "music": GenerationSettings(max_new_tokens=2000, top_k=200, repetition_penalty=1.15),
    "paper-text": GenerationSettings(max_new_tokens=500, do_sample=False, num_beams=5),
    "paper-image": GenerationSettings(max_new_tokens=200, top_p=0.7),
    "paper-speech": GenerationSettings(max_new_tokens=1500, top_p=0.7),
}


def get_preset(name: str) -> GenerationSettings:
    try:
        return GENERATION_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown generation preset {name!r}; choose from {', '.join(GENERATION_PRESETS)}") from None


def generate_ids(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layout: TokenLayout,
    settings: GenerationSettings,
    *,
    stop_ids: list[int],
    pad_id: int,
    seed: int | None = None,
    stop_strings: list[str] | None = None,
    tokenizer=None,
    streamer=None,
) -> torch.Tensor:
    """input_ids, attention_mask: LongTensor [B, L], left-padded -> new ids LongTensor [B, N]
    (padded with pad_id after a sequence stops). stop_strings (with tokenizer) end generation
    on text that is no single token (the AnyGPT template's '<eom>'). streamer: HF's contract
    (its first put() is the prompt; batch 1 only)."""
    import anygpt.lm.hf_imports  # noqa: F401  (before transformers: no scikit-learn)
    from transformers import GenerationConfig, LogitsProcessorList

    from anygpt.lm.constraints import SegmentConstraint

    settings.check()
    processors = LogitsProcessorList()
    if settings.constrained:
        processors.append(SegmentConstraint(
            layout, max_length=input_ids.shape[1] + settings.max_new_tokens, max_frames=settings.max_frames,
        ))
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        temperature=settings.temperature if settings.do_sample else None,
        top_p=settings.top_p if settings.do_sample else None,
        top_k=settings.top_k if settings.do_sample else None,
        repetition_penalty=settings.repetition_penalty,
        num_beams=settings.num_beams,
        eos_token_id=stop_ids,
        pad_token_id=pad_id,
        bos_token_id=model.config.bos_token_id,
        stop_strings=stop_strings or None,
    )
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
            logits_processor=processors, tokenizer=tokenizer if stop_strings else None, streamer=streamer,
        )
    return out[:, input_ids.shape[1]:]
