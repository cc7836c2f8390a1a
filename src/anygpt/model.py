"""AnyGPT: the LM, its text tokenizer, the token layout and the modality tokenizers, together.

    model = AnyGPT.from_pretrained("path/to/AnyGPT-chat")        # released or ours
    conv = Conversation()
    conv.add_user("Describe this picture.", image=["cat.png"])
    reply = model.generate(conv)                                  # appended to conv
    files = model.save_media(reply, "out/")

Generation runs on anygpt.lm.engine (static KV cache, batching, streaming, optional int8) by
default; `engine="hf"` uses HF generate, the reference. `generate_batch` answers several
conversations in one batch; `streamer=ReplyStreamer(model)` streams a reply as events.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import torch

from anygpt.conversation import Conversation, Reply
from anygpt.errors import AnyGPTError, LayoutError
from anygpt.files import atomic_path
from anygpt.layout import TokenLayout
from anygpt.lm.backends import BACKENDS
from anygpt.lm.checkpoint import FolderConfig, save_lm
from anygpt.lm.generation import GenerationSettings, generate_ids, get_preset
from anygpt.lm.sequence import SequenceEncoder
from anygpt.modalities import get_modality
from anygpt.modalities.registry import LazyTokenizers
from anygpt.modalities.base import ModalityTokenizer
from anygpt.model_parts import ModelParts
from anygpt.parts import CodesPart, MediaFilePart, TextPart, append_text
from anygpt.templates import get_chat_template, instruction_prompt

if TYPE_CHECKING:
    from anygpt.lm.engine import Engine


class AnyGPT:
    def __init__(self, lm, tokenizer, layout: TokenLayout, *,
                 tokenizers: Mapping[str, ModalityTokenizer] | None = None, template: str = "MMGPT"):
        self._lm = lm  # HF causal LM, or anygpt.lm.plain_llama.PlainLlama until `lm` is first read
        self.tokenizer = tokenizer
        self._hf_tokenizer = None
        self.layout = layout
        self.template = get_chat_template(template)
        # modality -> tokenizer; from_pretrained defers loading each until a reply needs it
        self.tokenizers = LazyTokenizers(self._check_tokenizer)
        for name, tok in (tokenizers or {}).items():
            self.set_tokenizer(name, tok)
        self.sequence_encoder = SequenceEncoder(tokenizer, layout, self.encode_media)
        self._codes_cache: dict[tuple, CodesPart] = {}
        self._engines: dict[tuple, object] = {}
        # modality -> {"loader", "path"}: the tokenizers a saved folder names (see lm.checkpoint)
        self.tokenizer_entries: dict[str, dict] = {}
        # reply modality -> GenerationSettings fields over its preset (anygpt.json's "generation")
        self.generation_defaults: dict[str, dict] = {}
        # modality -> directions a single request is written in as its pretraining instruction
        # rather than the chat template (FolderConfig.instruction_prompts)
        self.instruction_prompts: dict[str, list[str]] = {}

    @property
    def lm(self):
        """The HF causal LM. A model folder read without transformers (anygpt.lm.checkpoint:
        the generation engine needs nothing else) becomes transformers' model here, on first
        use, sharing its tensors."""
        if hasattr(self._lm, "to_hf"):
            self._lm = self._lm.to_hf()
        return self._lm

    @lm.setter
    def lm(self, lm) -> None:
        self._lm = lm

    @property
    def hf_tokenizer(self):
        """The text tokenizer as transformers' object (HF generate's stop strings need it)."""
        if self._hf_tokenizer is None:
            self._hf_tokenizer = self.tokenizer.to_hf() if hasattr(self.tokenizer, "to_hf") else self.tokenizer
        return self._hf_tokenizer

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_parts(cls, parts: ModelParts) -> "AnyGPT":
        """The model of resolved parts (anygpt.model_parts)."""
        model = cls(parts.lm, parts.text_tokenizer, parts.layout, tokenizers=parts.tokenizers, template=parts.template)
        for modality, load in parts.deferred.items():
            model.tokenizers.defer(modality, load)
        model.tokenizer_entries = dict(parts.tokenizer_entries)
        model.generation_defaults = dict(parts.generation)
        model.instruction_prompts = dict(parts.instruction_prompts)
        return model

    @classmethod
    def from_pretrained(cls, path: str | Path, *, tokenizers: Mapping[str, ModalityTokenizer] | None = None,
                        template: str | None = None, dtype: torch.dtype = torch.float32,
                        device: str = "cpu") -> "AnyGPT":
        """Load a model folder: a released AnyGPT folder (e.g. fnlp/AnyGPT-chat downloaded by the
        user) or one of ours (see ModelParts.from_folder for `tokenizers` and `template`). A
        shipped model by name ("anygpt-tiny"): anygpt.loaders.load_model."""
        return cls.from_parts(ModelParts.from_folder(path, tokenizers=tokenizers, template=template,
                                                     dtype=dtype, device=device))

    def save_pretrained(self, path: str | Path) -> Path:
        """Write our folder format (safetensors weights, tokenizer, anygpt.json) into `path`: a
        new or empty folder, or one of our model folders (replaced whole, its README kept). A
        folder holding anything else is refused (OutputError), never overwritten."""
        cfg = FolderConfig(self.layout.specs, self.template.name, self.tokenizer_entries, released=False,
                           generation=self.generation_defaults, instruction_prompts=self.instruction_prompts)
        return save_lm(path, self.lm, self.tokenizer, cfg, flag="save_pretrained's folder")

    def set_tokenizer(self, modality: str, tok: ModalityTokenizer) -> None:
        """Attach a modality tokenizer; its LM-facing codes must match the model's layout."""
        self.tokenizers[modality] = tok  # checked by _check_tokenizer

    def _check_tokenizer(self, modality: str, tok: ModalityTokenizer) -> None:
        spec = self.layout[modality].spec
        got = tok.token_spec
        if (got.codebook_size, got.num_codebooks, got.frames_per_item) != (
                spec.codebook_size, spec.num_codebooks, spec.frames_per_item):
            raise LayoutError(
                f"{modality} tokenizer writes {got.num_codebooks} x {got.codebook_size} codes "
                f"({got.frames_per_item or 'variable'} frames) but the model's layout expects "
                f"{spec.num_codebooks} x {spec.codebook_size} ({spec.frames_per_item or 'variable'})"
            )

    # ----------------------------------------------------------------- media
    def _tokenizer_for(self, modality: str) -> ModalityTokenizer:
        self.layout[modality]  # unknown modality -> clear error
        if modality not in self.tokenizers:
            raise AnyGPTError(
                f"no {modality} tokenizer is loaded with this model; pass one to "
                f"AnyGPT.from_pretrained(..., tokenizers={{'{modality}': ...}})"
            )
        return self.tokenizers[modality]

    def encode_media(self, part: MediaFilePart) -> CodesPart:
        """File -> LM-facing codes, cached by (path, size, mtime) across turns."""
        st = part.path.stat()
        key = (part.modality, str(part.path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._codes_cache:
            codes = self._tokenizer_for(part.modality).encode_file(part.path)
            self._codes_cache[key] = CodesPart(part.modality, codes)
        return self._codes_cache[key]

    def decode_media(self, part: CodesPart, **context) -> torch.Tensor:
        """Codes -> one media item ([C, S] audio or [3, H, W] image). context: e.g. the voice
        prompt for speech's second stage."""
        with torch.inference_mode():
            return self._tokenizer_for(part.modality).decode(part.codes.unsqueeze(0), **context)[0]

    def media_stream(self, modality: str, emit, **options):
        """A live decoder of one segment's codes into playable media as they arrive (speech:
        anygpt.modalities.speech_streaming, emitting AudioChunk events), or None for a
        modality that is only decoded whole. options: voice_prompt, seed, chunk sizes."""
        tok = self.tokenizers.get(modality)
        if modality != "speech" or tok is None:
            return None
        from anygpt.modalities.speech_streaming import speech_audio_stream

        return speech_audio_stream(tok, emit, **options)

    def save_media(self, reply: Reply, out_dir: str | Path, stem: str = "reply", **context) -> list[Path]:
        """Write each media part of a reply into out_dir. Without a tokenizer for its modality,
        or for a segment the lenient parse had to repair, the codes are written in the release's
        text form (`.codes.txt`) instead."""
        out_dir = Path(out_dir)
        files = []
        for i, part in enumerate(reply.media()):
            base = out_dir / f"{stem}-{i}-{part.modality}"
            tok = self.tokenizers.get(part.modality)
            if tok is not None and not part.repaired:
                ext = tok.file_extensions[0] if tok.file_extensions else (
                    ".png" if get_modality(part.modality).kind == "image" else ".wav")
                files.append(tok.save(self.decode_media(part, **context), base.with_suffix(ext)))
            else:
                path = base.with_suffix(".codes.txt")
                text = self.layout.codes_to_text(part.modality, part.codes, exact_count=not part.repaired)
                with atomic_path(path) as tmp:
                    tmp.write_text(text + "\n", encoding="utf-8")
                files.append(path)
        reply.files.extend(files)
        return files

    # ----------------------------------------------------------------- generation
    @property
    def turn_end_id(self) -> int | None:
        """Id of the template's turn end if it is one token ('<eos>' in the released vocabulary)."""
        end = self.tokenizer.convert_tokens_to_ids(self.template.bot_end)
        return None if end is None or end == self.tokenizer.unk_token_id else end

    @property
    def stop_ids(self) -> list[int]:
        return [i for i in (self.tokenizer.eos_token_id, self.turn_end_id) if i is not None]

    def engine(self, *, quantize: str | None = None, max_batch: int = 8, backend: str = "engine") -> "Engine":
        """The generation engine for this model (built on first use, then reused): see
        anygpt.lm.engine. quantize: None (fp32, token-identical to HF generate) or "int8".
        backend: "engine", "native", "onnx", "llamacpp" or "auto" (anygpt.lm.backends).
        It is rebuilt when the LM's parameters were changed in place since (e.g. by training
        steps between evaluations), since it may hold copies of them."""
        from anygpt.lm.backends import build_engine

        key = (backend, quantize, max_batch)
        versions = [p._version for p in self._lm.parameters()]  # bumped by every in-place change
        if key not in self._engines or self._engines[key][1] != versions:
            engine = build_engine(backend, self._lm, self.layout, max_batch=max_batch, quantize=quantize,
                                  tokenizer=self.tokenizer, pad_id=self.tokenizer.pad_token_id)
            self._engines[key] = (engine, versions)
        return self._engines[key][0]

    def _prompt_ids(self, prompt: list, settings: GenerationSettings,
                    force_modality: str | None) -> tuple[torch.Tensor, list[int]]:
        """Prompt parts -> (prompt ids LongTensor [L], reply ids already written: the forced
        start marker, appended unless the prompt ends with it)."""
        ids = self.sequence_encoder.encode(prompt, bos=True)
        start: list[int] = []
        if force_modality and force_modality != "text":
            spec = self.layout[force_modality].spec
            need = (spec.frames_per_item or 1) * spec.num_codebooks + 1
            if settings.constrained and settings.max_new_tokens < need:
                raise AnyGPTError(
                    f"max_new_tokens={settings.max_new_tokens} is too small for a forced {force_modality} "
                    f"segment: it needs at least {need} tokens (its codes and end marker)"
                )
            start = [self.layout[force_modality].start_id]
            if not len(ids) or int(ids[-1]) != start[0]:
                ids = torch.cat([ids, torch.tensor(start)])
        return ids, start

    @property
    def _stop_strings(self) -> list[str]:
        return [] if self.turn_end_id is not None else [self.template.bot_end]

    def preset(self, name: str) -> GenerationSettings:
        """A generation preset (anygpt.lm.generation) with what this model's folder sets over
        it for that reply modality (e.g. anygpt-tiny draws greedily with guidance)."""
        return get_preset(name).with_(**self.generation_defaults.get(name, {}))

    def _settings(self, preset: str, settings: GenerationSettings | None, engine: str) -> GenerationSettings:
        if engine not in ENGINES:
            raise AnyGPTError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
        return (settings or self.preset(preset)).check()

    def _reply_settings(self, settings: GenerationSettings, force_modality: str | None) -> GenerationSettings:
        """force_modality "text": a reply without media (the constraint starts no segment)."""
        if force_modality != "text":
            return settings
        return settings.with_(max_frames={m: 0 for m in self.layout.modalities})

    def _chat_prompt(self, conversation: Conversation, force_modality: str | None) -> list:
        if not conversation.turns or conversation.turns[-1].role != "user":
            raise AnyGPTError("the conversation must end with a user turn before generate()")
        routed = self._instruction_prompt(conversation.turns[-1].parts, force_modality)
        if routed is not None:
            return routed
        marker = self.layout[force_modality].spec.start if force_modality not in (None, "text") else None
        return self.template.prompt(conversation.turns, force_modality_start=marker)

    def _instruction_prompt(self, parts: list, reply: str | None) -> list | None:
        """The last user turn's parts as the pretraining instruction the model learnt that
        ability from, where the folder routes it (instruction_prompts), else None: text alone
        asking for a `reply` modality routed "from_text" (the request as the instruction's text),
        or text with one attachment of a modality routed "to_text" and a text reply (the
        attachment as its media; the request's words are not read). A spoken instruction (no
        text), several attachments or a reply of another kind keep the chat template."""
        texts = [p for p in parts if isinstance(p, TextPart)]
        media = [p for p in parts if not isinstance(p, TextPart)]
        if not texts:
            return None
        if not media and "from_text" in self.instruction_prompts.get(reply, ()):
            request = " ".join(p.text for p in texts).strip()
            return instruction_prompt("from_text", reply, text=request)
        if len(media) == 1 and reply == "text" and "to_text" in self.instruction_prompts.get(media[0].modality, ()):
            return instruction_prompt("to_text", media[0].modality, media=media[0])
        return None

    def generate(self, conversation: Conversation, *, preset: str = "text",
                 settings: GenerationSettings | None = None, force_modality: str | None = None,
                 seed: int | None = None, streamer=None, engine: str = "engine",
                 quantize: str | None = None, threads: int | None = None) -> Reply:
        """Write the assistant's next turn, append it to `conversation`, and return it.

        force_modality: start the reply with that modality's start marker (as the release's
        force_image_generation etc.); "text": a reply without media; "auto": what the last user
        message asks for (anygpt.modality_choice: a modality, or text; a spoken instruction's
        reply gets its speech appended if the model wrote none, unless streamed); None or
        "none": the model chooses. A single request the model's folder routes
        (`instruction_prompts`: _instruction_prompt) is written as its pretraining instruction,
        not the chat template. Constrained settings parse the reply strictly; the
        unconstrained (release) mode parses leniently and marks repaired segments.
        streamer: a BaseStreamer-shaped object (put/end, e.g. anygpt.lm.streaming.ReplyStreamer)
        that receives the reply's ids as they are written, the forced start marker first.
        engine: "engine" (anygpt.lm.engine; default), "onnx" (ONNX Runtime), "llamacpp"
        (llama.cpp), "auto" (the fastest installed, anygpt.lm.backends) or "hf" (HF generate,
        the reference; beam search always runs there). quantize: "int8" for the engine's int8 projections.
        threads: torch threads while generating (engine default: 1).
        """
        ensure: list[str] = []
        if force_modality in ("auto", "none"):
            from anygpt.modality_choice import ensured_modalities, reply_modality

            last = conversation.turns[-1] if conversation.turns else None
            request = " ".join(p.text for p in last.parts if isinstance(p, TextPart)) if last else None
            if force_modality == "auto":
                ensure = ensured_modalities(request, self.layout.modalities)
            force_modality = reply_modality(force_modality, request, self.layout.modalities)
        prompt = self._chat_prompt(conversation, force_modality)
        options = dict(preset=preset, settings=settings, seed=seed, engine=engine, quantize=quantize, threads=threads)
        parts = self.complete(prompt, force_modality=force_modality, streamer=streamer, **options)
        for m in ensure if streamer is None else []:  # a streamed reply ends with the model's turn
            if not any(isinstance(p, CodesPart) and p.modality == m for p in parts):
                # the reply so far, continued with m's start marker (as the server's `ensure`)
                more = append_text(prompt + parts, " " + self.layout[m].spec.start)
                parts = parts + self.complete(more, force_modality=m, **options)
        conversation.add_assistant(parts)
        return Reply(parts)

    def generate_batch(self, conversations: Sequence[Conversation], *, preset: str = "text",
                       settings: GenerationSettings | None = None, force_modality: str | None = None,
                       seed: int | None = None, engine: str = "engine", quantize: str | None = None,
                       threads: int | None = None) -> list[Reply]:
        """`generate` for several conversations at once (left-padded into one batch; each row
        stops on its own). Conversation i samples from seed + i, so its reply does not depend
        on the others in the batch (engine). Each reply is appended to its conversation."""
        prompts = [self._chat_prompt(c, force_modality) for c in conversations]
        replies = self.complete_batch(prompts, preset=preset, settings=settings, force_modality=force_modality,
                                      seed=seed, engine=engine, quantize=quantize, threads=threads)
        for conv, parts in zip(conversations, replies):
            conv.add_assistant(parts)
        return [Reply(parts) for parts in replies]

    def complete(self, prompt: list, *, streamer=None, **kwargs) -> list[TextPart | CodesPart]:
        """Any prompt (a chat template's, or a pretraining prompt from anygpt.templates) -> the
        model's continuation as parts, up to its turn end. Options as `complete_batch`."""
        return self.complete_batch([prompt], streamer=streamer, **kwargs)[0]

    def complete_batch(self, prompts: Sequence[list], *, preset: str = "text",
                       settings: GenerationSettings | None = None, force_modality: str | None = None,
                       seed: int | None = None, streamer=None, engine: str = "engine",
                       quantize: str | None = None, threads: int | None = None) -> list[list[TextPart | CodesPart]]:
        """Prompts (lists of parts) -> each continuation's parts; prompt i samples from seed + i.
        force_modality: each continuation starts with that modality's start marker ("text":
        holds no media). streamer:
        only with a single prompt (see `generate`)."""
        settings = self._reply_settings(self._settings(preset, settings, engine), force_modality)
        if streamer is not None and len(prompts) != 1:
            raise AnyGPTError("a streamer follows one prompt at a time")
        if settings.cfg_scale != 1.0 and force_modality in self.layout.modalities:
            base = _seed(seed)
            with _torch_threads(threads):
                built = [self._guided_reply(p, settings, force_modality, base + i, quantize, streamer)
                         for i, p in enumerate(prompts)]
            news, starts = [new for new, _ in built], [start for _, start in built]
        elif engine == "hf" or settings.num_beams > 1:
            encoded = [self._prompt_ids(p, settings, force_modality) for p in prompts]
            if streamer is not None and encoded[0][1]:
                streamer.put(torch.tensor(encoded[0][1]))
            with _torch_threads(threads):
                news = self._generate_hf([ids for ids, _ in encoded], settings, seed, streamer)
            starts = [start for _, start in encoded]
        else:
            base = _seed(seed)
            built = [self.decoder_request(p, settings, force_modality=force_modality, seed=base + i,
                                         streamer=streamer if i == 0 else None) for i, p in enumerate(prompts)]
            results = self.engine(quantize=quantize, backend=engine).generate([r for r, _ in built], threads=threads)
            news, starts = [r.ids for r in results], [start for _, start in built]
        return [self.reply_parts(new, start, settings) for start, new in zip(starts, news)]

    def _guided_reply(self, prompt: list, settings: GenerationSettings, modality: str, seed: int,
                      quantize: str | None, streamer) -> tuple[list[int], list[int]]:
        """A forced fixed-length segment drawn with classifier-free guidance (anygpt.lm.guidance)
        against the unconditional prompt: the text-to-media pretraining prompt with its caption
        dropped, as training drops it. It runs on the engine's forward (fp32, or int8 with
        quantize), whatever the backend. -> (new ids: the codes and the end marker, start)."""
        from anygpt.data.pretraining import UNCONDITIONAL
        from anygpt.lm.guidance import guided_segment

        r = self.layout[modality]
        if not r.spec.frames_per_item or r.spec.num_codebooks != 1:
            raise AnyGPTError(f"cfg_scale={settings.cfg_scale}: guidance draws fixed-length segments of one "
                              f"codebook (an image); {modality} segments are not (use cfg_scale 1)")
        ids, start = self._prompt_ids(prompt, settings, modality)
        uncond_ids, _ = self._prompt_ids(instruction_prompt("from_text", modality, text=UNCONDITIONAL), settings, modality)
        codes = guided_segment(self.engine(quantize=quantize).model, ids, uncond_ids, (r.code_offset, r.code_end),
                               r.spec.frames_per_item, settings.cfg_scale, settings, torch.Generator().manual_seed(seed))
        new = [*codes.tolist(), r.end_id]
        if streamer is not None:
            streamer.put(torch.tensor(start + new))
            streamer.end()
        return new, start

    def decoder_request(self, prompt: list, settings: GenerationSettings, *, force_modality: str | None = None,
                       seed: int = 0, streamer=None, cancel=None, logit_bias: torch.Tensor | None = None):
        """One prompt (list of parts, media as CodesPart or MediaFilePart) -> (a Request of the
        decoder contract, anygpt.lm.decoder; start: the reply ids already written, i.e. the
        forced start marker or []). For callers that run a decoder themselves (the server:
        `model.engine(...).decoder()`); the streamer receives `start` now. Once the request
        has finished, `reply_parts(result.ids, start, settings)` gives the reply."""
        from anygpt.lm.decoder import Request

        settings = self._reply_settings(settings.check(), force_modality)
        ids, start = self._prompt_ids(prompt, settings, force_modality)
        if streamer is not None and start:
            streamer.put(torch.tensor(start))
        return Request(ids, settings, generator=seed, stop_ids=self.stop_ids, stop_strings=self._stop_strings,
                       streamer=streamer, cancel=cancel, logit_bias=logit_bias), start

    def reply_parts(self, new: Sequence[int], start: Sequence[int],
                    settings: GenerationSettings) -> list[TextPart | CodesPart]:
        """New ids of a reply (as the engine returns them) -> its parts up to the turn end;
        constrained settings parse strictly, unconstrained leniently (repaired segments marked)."""
        stops = set(self.stop_ids)
        new = list(new)
        cut = next((i for i, t in enumerate(new) if t in stops), len(new))
        return _until(self.sequence_encoder.decode(list(start) + new[:cut], strict=settings.constrained), self.template.bot_end)

    def _generate_hf(self, prompts: list[torch.Tensor], settings: GenerationSettings, seed: int | None,
                     streamer) -> list[list[int]]:
        from anygpt.lm.streaming import SkipPrompt

        device, pad = self.lm.device, self.tokenizer.pad_token_id
        width = max(p.numel() for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - p.numel():], mask[i, width - p.numel():] = p, 1
        new = generate_ids(
            self.lm, ids.to(device), mask.to(device), self.layout, settings, stop_ids=self.stop_ids, pad_id=pad,
            seed=seed, stop_strings=self._stop_strings, tokenizer=self.hf_tokenizer,
            streamer=SkipPrompt(streamer) if streamer is not None else None,
        )
        return new.cpu().tolist()


ENGINES = (*BACKENDS, "hf")  # the backends of anygpt.lm.backends, and HF generate


def _seed(seed: int | None) -> int:
    """The engine's seed: the one given, else one drawn from torch's global generator (so
    torch.manual_seed still makes a run repeatable)."""
    return int(seed) if seed is not None else int(torch.randint(0, 2**62, ()))


@contextmanager
def _torch_threads(n: int | None):
    """torch's thread count set to n (if given) inside the block, restored after."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _until(parts: list[TextPart | CodesPart], end: str) -> list[TextPart | CodesPart]:
    """The parts before the first occurrence of the turn-end string."""
    out: list[TextPart | CodesPart] = []
    for p in parts:
        if isinstance(p, TextPart) and end in p.text:
            head = p.text.split(end, 1)[0]
            if head:
                out.append(TextPart(head, markup=p.markup))
            break
        out.append(p)
    return out
