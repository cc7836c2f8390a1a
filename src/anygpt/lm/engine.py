"""The generation engine: prefill, then a decode loop over a static KV cache, for a batch of
requests that each stop on their own (issue 16).

    engine = Engine(lm, layout, max_batch=8)           # once per model; reused
    results = engine.generate([
        Request(prompt_ids, GenerationSettings(do_sample=False), stop_ids=[2]),
        Request(other_ids, get_preset("speech"), generator=7, streamer=my_streamer, cancel=event),
    ])
    results[0].ids, results[0].finish_reason             # new ids (stop id included), "stop" ...

Interface (what a server builds on):
- `Request`: prompt ids (LongTensor [L] or a list), GenerationSettings, a torch.Generator or an
  int seed (sampling uses only this stream: the same request gives the same tokens whatever
  else is in its batch), stop ids, stop strings (need the engine's tokenizer), an optional
  streamer, an optional cancel flag (threading.Event, read every step) and an optional
  logit_bias (FloatTensor [V], added before the constraint, as OpenAI's logit_bias).
- A streamer has transformers' BaseStreamer shape: `put(ids)` with LongTensor [n] of the
  request's new ids (never its prompt), `end()` once when the request finishes, whatever the
  reason. anygpt.lm.streaming.ReplyStreamer turns ids into text, media and audio events.
- `Result`: ids (list of new ids, the stop id included as HF does), finish_reason ("stop",
  "length" or "cancelled"), prompt_tokens.
- The cache lives for one `generate` call (sized to that batch's longest prompt plus its
  largest max_new_tokens, at most max_len) and is dropped when it returns or raises, so a
  failed or cancelled request leaves nothing behind for the next one.
- `threads`: the torch thread count used while generating (restored afterwards). Default 1,
  by measurement (`python benchmarks/bench_generation.py --sweep`, d384 x 6 model, batch 1, on
  2 shared cores): 1 thread 158 tok/s, 73 next to a busy process; 2 threads with OpenMP's
  default spin-waiting 22 and 20 (the 10x collapse: a thread spins on a core another process
  holds); 2 threads with OMP_WAIT_POLICY=PASSIVE 98 and 168 (noisy). A caller that wants more
  threads should start its process with OMP_WAIT_POLICY=PASSIVE (read when OpenMP starts,
  i.e. before torch is imported) and pass threads=N.

Bad input: an empty prompt, a prompt that does not fit the cache, settings out of range
(GenerationSettings.check), beam search (HF generate only) or a batch of settings the engine
cannot honour raise GenerationSettingsError/EngineError before any work; max_new_tokens that
would run past max_len are cut to fit (finish_reason "length", and the segment constraint's
budget is the cut one, so segments still close).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from anygpt.errors import AnyGPTError
from anygpt.layout import TokenLayout
from anygpt.lm.constraints import SegmentState, SegmentTables
from anygpt.lm.generation import GenerationSettings, GenerationSettingsError
from anygpt.lm.llama_static import LeanLlama
from anygpt.lm.sampling import RowSampling

DEFAULT_THREADS = 1


class EngineError(AnyGPTError, ValueError):
    """A request the engine cannot run (too long for the cache, empty prompt, beam search)."""


@dataclass
class Request:
    """One generation job. prompt: LongTensor [L] or list of ids (already templated)."""

    prompt: Any
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    generator: torch.Generator | int | None = None  # None: seed 0
    stop_ids: Sequence[int] = ()
    stop_strings: Sequence[str] = ()
    streamer: Any = None
    cancel: threading.Event | None = None
    logit_bias: torch.Tensor | None = None  # FloatTensor [V] added to the logits before the constraint


@dataclass
class Result:
    ids: list[int]
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int


class Engine:
    """Built once per model and reused for every request.

    lm: a HF LlamaForCausalLM (weights read, never changed); layout: the token layout the
    segment constraint follows; max_batch: rows decoded together (larger lists are run in
    chunks); max_len: longest prompt + reply (default: the model's max_position_embeddings);
    quantize: None or "int8" (dynamic int8 projections, anygpt.lm.quantize); threads: torch
    threads while generating (None: DEFAULT_THREADS); tokenizer: needed only for stop_strings;
    pad_id: the id fed to finished rows (default: the model's pad id or 0); copy_weights: see
    LeanLlama (default: fused fp32 copies for small fp32 models on CPU, else shared weights)."""

    def __init__(self, lm, layout: TokenLayout, *, max_batch: int = 8, max_len: int | None = None,
                 quantize: str | None = None, threads: int | None = None, tokenizer=None,
                 pad_id: int | None = None, copy_weights: bool | None = None):
        if max_batch < 1:
            raise EngineError(f"max_batch={max_batch}: must be at least 1")
        self.model = LeanLlama(lm, copy_weights=copy_weights)
        if quantize is not None:
            from anygpt.lm.quantize import quantize_lean

            quantize_lean(self.model, quantize)
        self.quantize = quantize
        self.layout = layout
        self.max_batch = max_batch
        self.max_len = int(max_len or getattr(lm.config, "max_position_embeddings", 4096))
        if threads is not None and threads < 1:
            raise EngineError(f"threads={threads}: must be at least 1")
        self.threads = threads
        self.tokenizer = tokenizer
        cfg_pad = getattr(lm.config, "pad_token_id", None)
        self.pad_id = pad_id if pad_id is not None else (cfg_pad if isinstance(cfg_pad, int) else 0)
        self.tables = SegmentTables(layout, self.model.vocab_size, self.model.device)
        self.group_of_class = None
        if quantize is not None:
            # int8 sub-heads give exactly the full int8 head's logits, so a step whose rows all
            # sit in one group (e.g. all inside speech segments) reads only that part of the head
            groups, self.group_of_class = self.tables.head_groups()
            from anygpt.lm.quantize import Int8Dense

            self.model.set_head_groups(groups, Int8Dense)
        self.cache = None  # the live StaticKVCache during generate(), else None
        # the one-token step; benchmarks/bench_generation.py --compile swaps in torch.compile's
        # version of it (measured: no gain end to end on CPU, so eager is the default)
        self.decode_step = self.model.forward

    # ----------------------------------------------------------------- public
    def generate(self, requests: Sequence[Request], *, threads: int | None = None) -> list[Result]:
        """Run `requests` (chunks of max_batch rows) -> one Result each, in order. threads:
        this call's torch thread count (default: the engine's)."""
        requests = list(requests)
        if threads is not None and threads < 1:
            raise EngineError(f"threads={threads}: must be at least 1")
        for i, r in enumerate(requests):
            self._check(r, i)
        out: list[Result] = []
        with self._threads(threads):
            for lo in range(0, len(requests), self.max_batch):
                out += self._run(requests[lo: lo + self.max_batch])
        return out

    def free(self) -> None:
        """Drop the KV cache (generate does this itself when it returns or raises)."""
        self.cache = None

    # ----------------------------------------------------------------- checks
    def _check(self, r: Request, index: int) -> None:
        where = f"request {index}"
        if not isinstance(r.settings, GenerationSettings):
            raise EngineError(f"{where}: settings must be a GenerationSettings, not {type(r.settings).__name__}")
        r.settings.check()
        if r.settings.num_beams != 1:
            raise GenerationSettingsError(f"{where}: num_beams={r.settings.num_beams}: beam search runs on HF "
                                          "generate only (engine='hf')")
        prompt = torch.as_tensor(r.prompt, dtype=torch.long).reshape(-1)
        if prompt.numel() == 0:
            raise EngineError(f"{where}: empty prompt (give at least one id, e.g. the BOS id)")
        if prompt.numel() >= self.max_len:
            raise EngineError(f"{where}: prompt of {prompt.numel()} tokens does not fit the cache of "
                              f"{self.max_len} positions (max_len); shorten the conversation or raise max_len")
        v = self.model.vocab_size
        if int(prompt.min()) < 0 or int(prompt.max()) >= v:
            raise EngineError(f"{where}: prompt ids must be in 0..{v - 1}")
        if r.stop_strings and self.tokenizer is None:
            raise EngineError(f"{where}: stop_strings need the engine's tokenizer (Engine(..., tokenizer=tok))")
        if r.logit_bias is not None and tuple(torch.as_tensor(r.logit_bias).shape) != (v,):
            raise EngineError(f"{where}: logit_bias must have shape [{v}] (one value per id)")
        if r.generator is not None and not isinstance(r.generator, (int, torch.Generator)):
            raise EngineError(f"{where}: generator must be a torch.Generator or an int seed")

    @contextmanager
    def _threads(self, threads: int | None) -> Iterator[None]:
        want = threads or self.threads or DEFAULT_THREADS
        before = torch.get_num_threads()
        if want != before:
            torch.set_num_threads(want)
        try:
            yield
        finally:
            if want != before:
                torch.set_num_threads(before)

    # ----------------------------------------------------------------- the loop
    def _run(self, reqs: list[Request]) -> list[Result]:
        try:
            return self._decode(reqs)
        finally:
            self.cache = None

    @torch.inference_mode()
    def _decode(self, reqs: list[Request]) -> list[Result]:
        m, dev, b = self.model, self.model.device, len(reqs)
        prompts = [torch.as_tensor(r.prompt, dtype=torch.long).reshape(-1) for r in reqs]
        lengths = torch.tensor([p.numel() for p in prompts])
        width = int(lengths.max())
        room = self.max_len - width
        budget = torch.tensor([min(r.settings.max_new_tokens, room) for r in reqs])
        capacity = width + int(budget.max())
        ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - p.numel():] = p
        pad = (width - lengths)[:, None]
        real = torch.arange(width)[None, :] >= pad  # [B, width]
        positions = (torch.arange(width)[None, :] - pad).clamp(min=0)

        self.cache = cache = m.new_cache(b, capacity)
        cache.valid[:, :width] = real.to(dev)
        cache.valid[:, width:] = True
        cache.padded = bool((~real).any())

        settings = [r.settings for r in reqs]
        sampling = RowSampling(settings, dev)
        generators = [_generator(r.generator) for r in reqs]
        constrained = torch.tensor([s.constrained for s in settings], device=dev)
        state = None
        if bool(constrained.any()):
            limits = self.tables.frame_limits([s.max_frames for s in settings], b)
            state = SegmentState(self.tables, ids, budget.to(dev), limits, prompt_mask=real)
        seen = None
        if sampling.any_penalty:  # every id of the prompt, pad columns excluded (the last column is real)
            seen = torch.zeros(b, m.vocab_size, dtype=torch.bool, device=dev)
            seen.scatter_(1, torch.where(real, ids, ids[:, -1:]).to(dev), True)
        stop_sets = [set(int(s) for s in r.stop_ids) for r in reqs]
        stop_table = torch.zeros(b, m.vocab_size, dtype=torch.bool, device=dev)
        for i, s in enumerate(stop_sets):
            if s:
                stop_table[i, list(s)] = True
        has_stop_strings = any(r.stop_strings for r in reqs)
        bias = None
        if any(r.logit_bias is not None for r in reqs):
            bias = torch.stack([torch.zeros(m.vocab_size) if r.logit_bias is None else
                                torch.as_tensor(r.logit_bias, dtype=torch.float32) for r in reqs]).to(dev, m.dtype)

        out: list[list[int]] = [[] for _ in reqs]
        reasons: list[str | None] = [None] * b
        done = torch.zeros(b, dtype=torch.bool)
        budget_left = budget.clone()
        all_constrained = bool(constrained.all())
        cls = state.classes() if state is not None else None
        try:
            logits = m(ids.to(dev), positions.to(dev), cache, head_group=self._group(cls, all_constrained))
            step = 0
            while True:
                self._cancel(reqs, done, reasons)
                if bool(done.all()):
                    break
                if seen is not None:
                    sampling.penalise_(logits, seen)
                if bias is not None:
                    logits += bias
                if state is not None:
                    mask = self.tables.allowed[cls]
                    if not all_constrained:
                        mask |= ~constrained[:, None]
                    logits.masked_fill_(~mask, float("-inf"))
                tokens = sampling.choose(logits, generators)
                tokens = torch.where(done.to(dev), self.pad_id, tokens)
                host = tokens.cpu()
                tok_list = host.tolist()
                hit_stop = stop_table.gather(1, tokens[:, None])[:, 0].cpu()
                budget_left -= 1
                for i in (~done).nonzero().flatten().tolist():
                    out[i].append(tok_list[i])
                    if reqs[i].streamer is not None:
                        reqs[i].streamer.put(host[i:i + 1])
                if has_stop_strings:
                    hit_stop |= ~done & self._stop_strings(reqs, out)
                finished = ~done & (hit_stop | (budget_left <= 0))
                for i in finished.nonzero().flatten().tolist():
                    reasons[i] = "stop" if bool(hit_stop[i]) else "length"
                    self._end(reqs[i])
                done |= finished
                if bool(done.all()):
                    break
                if state is not None:
                    state.advance(tokens)
                    cls = state.classes()
                if seen is not None:
                    seen.scatter_(1, tokens[:, None], True)
                step += 1
                logits = self.decode_step(tokens[:, None], (lengths + step - 1).to(dev)[:, None], cache,
                                          head_group=self._group(cls, all_constrained, done))
        except BaseException:
            for i in (~done).nonzero().flatten().tolist():
                self._end(reqs[i])
            raise
        return [Result(out[i], reasons[i] or "length", int(lengths[i])) for i in range(b)]

    def _group(self, cls: torch.Tensor | None, all_constrained: bool, done: torch.Tensor | None = None) -> int | None:
        """The head group every unfinished row's next token lies in, if they share one (int8
        engines; finished rows' tokens are replaced by the pad id anyway)."""
        if self.group_of_class is None or cls is None or not all_constrained:
            return None
        g = self.group_of_class[cls]
        if done is not None:
            g = g[~done.to(g.device)]
        return int(g[0]) if g.numel() and bool((g == g[0]).all()) else None

    def _cancel(self, reqs: list[Request], done: torch.Tensor, reasons: list[str | None]) -> None:
        for i, r in enumerate(reqs):
            if not done[i] and r.cancel is not None and r.cancel.is_set():
                reasons[i] = "cancelled"
                done[i] = True
                self._end(r)

    def _stop_strings(self, reqs: Sequence[Request], out: Sequence[list[int]]) -> torch.Tensor:
        """BoolTensor [B]: the row's text ends with one of its stop strings (tail decoded only)."""
        hit = torch.zeros(len(reqs), dtype=torch.bool)
        for i, r in enumerate(reqs):
            if r.stop_strings and out[i]:
                longest = max(len(s) for s in r.stop_strings)
                tail = self.tokenizer.decode(out[i][-(longest + 2):])
                hit[i] = any(s in tail for s in r.stop_strings)
        return hit

    @staticmethod
    def _end(r: Request) -> None:
        if r.streamer is not None:
            r.streamer.end()


def _generator(g: torch.Generator | int | None) -> torch.Generator:
    if isinstance(g, torch.Generator):
        return g
    return torch.Generator().manual_seed(0 if g is None else int(g))
