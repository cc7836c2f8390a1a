"""The generation engine: prefill, then a decode loop over a static KV cache, for a batch of
requests that each stop on their own (issue 16), batched continuously: `Engine.decoder()` is
the decoder contract (anygpt.lm.decoder: prefill, step, cancel, stream, free), with one KV slot
per running request; `Engine.generate` runs a list of requests through one such decoder,
starting each queued request as soon as a slot frees.

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
- The cache lives for one `generate` call (max_batch slots, each as long as the longest
  prompt plus max_new_tokens needs, at most max_len) and is dropped when it returns or raises,
  so a failed or cancelled request leaves nothing behind for the next one. A decoder's cache
  lives until its close().
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
would run past max_len are cut to fit the request's own prompt (finish_reason "length", and the
segment constraint's budget is the cut one, so segments still close).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from anygpt.layout import TokenLayout
from anygpt.lm.constraints import SegmentState, SegmentTables
from anygpt.lm.decoder import EngineError, PromptTooLong, Request, RequestFailed, Result
from anygpt.lm.generation import GenerationSettings, GenerationSettingsError
from anygpt.lm.llama_static import LeanLlama
from anygpt.lm.sampling import RowSampling

DEFAULT_THREADS = 1
__all__ = ["Engine", "EngineError", "Request", "Result", "ContinuousBatch"]


class Engine:
    """Built once per model and reused for every request (a Backend of anygpt.lm.decoder).

    lm: a HF LlamaForCausalLM (weights read, never changed); layout: the token layout the
    segment constraint follows; max_batch: rows decoded together (larger lists wait for a
    free slot); max_len: longest prompt + reply (default: the model's
    max_position_embeddings); quantize: None or "int8" (dynamic int8 projections,
    anygpt.lm.quantize); threads: torch threads while generating (None: DEFAULT_THREADS);
    tokenizer: needed only for stop_strings; pad_id: the model's pad id (default: its config's
    or 0); copy_weights: see LeanLlama (default: fused fp32 copies for small fp32 models on
    CPU, else shared weights)."""

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
        self.cache = None  # the live decoder during generate(), else None
        # the one-token step; benchmarks/bench_generation.py --compile swaps in torch.compile's
        # version of it (measured: no gain end to end on CPU, so eager is the default)
        self.decode_step = self.model.forward

    # ----------------------------------------------------------------- public
    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    def decoder(self, *, capacity: int | None = None, reserve: bool = False) -> "ContinuousBatch":
        """A running batch of up to max_batch requests (the decoder contract, anygpt.lm.decoder).
        capacity: KV columns per slot (default max_len); reserve: write the whole cache once now,
        so that its memory is taken at start and not as replies grow (a server's steady RSS)."""
        return ContinuousBatch(self, capacity=capacity, reserve=reserve)

    def generate(self, requests: Sequence[Request], *, threads: int | None = None) -> list[Result]:
        """Run `requests` -> one Result each, in order: up to max_batch at a time, each queued
        one starting as soon as a running one finishes. threads: this call's torch thread
        count (default: the engine's). Every request is checked before any work."""
        requests = list(requests)
        if threads is not None and threads < 1:
            raise EngineError(f"threads={threads}: must be at least 1")
        for i, r in enumerate(requests):
            self._check(r, f"request {i}: " if len(requests) > 1 else "")
        if not requests:
            return []
        need = max(min(self.max_len, _prompt(r).numel() + r.settings.max_new_tokens) for r in requests)
        results: dict[int, Result] = {}
        with self._threads(threads):
            self.cache = dec = self.decoder(capacity=need)
            try:
                pending = list(enumerate(requests))[::-1]
                index: dict[int, int] = {}
                while pending or dec.running:
                    while pending and dec.has_room:
                        i, r = pending.pop()
                        index[id(dec.prefill(r, checked=True))] = i
                    for done in dec.step():
                        results[index[id(done)]] = done.result
            except RequestFailed as e:
                raise e.__cause__ from None
            finally:
                dec.close()
                self.cache = None
        return [results[i] for i in range(len(requests))]

    def free(self) -> None:
        """Drop the KV cache (generate does this itself when it returns or raises)."""
        if self.cache is not None:
            self.cache.close()
        self.cache = None

    # ----------------------------------------------------------------- checks
    def _check(self, r: Request, where: str) -> None:
        """Raise EngineError / GenerationSettingsError for a request the engine cannot run.
        where: "" or "request 3: ", the start of the message."""
        if not isinstance(r.settings, GenerationSettings):
            raise EngineError(f"{where}settings must be a GenerationSettings, not {type(r.settings).__name__}")
        r.settings.check()
        if r.settings.num_beams != 1:
            raise GenerationSettingsError(f"{where}num_beams={r.settings.num_beams}: beam search runs on HF "
                                          "generate only (engine='hf')")
        prompt = _prompt(r)
        if prompt.numel() == 0:
            raise EngineError(f"{where}empty prompt (give at least one id, e.g. the BOS id)")
        if prompt.numel() >= self.max_len:
            raise PromptTooLong(f"{where}the prompt is {prompt.numel()} tokens long; this model reads at most "
                              f"{self.max_len - 1} tokens, reply included: drop earlier turns or shorten the message")
        v = self.model.vocab_size
        if int(prompt.min()) < 0 or int(prompt.max()) >= v:
            raise EngineError(f"{where}prompt ids must be in 0..{v - 1}")
        if r.stop_strings and self.tokenizer is None:
            raise EngineError(f"{where}stop_strings need the engine's tokenizer (Engine(..., tokenizer=tok))")
        if r.logit_bias is not None and tuple(torch.as_tensor(r.logit_bias).shape) != (v,):
            raise EngineError(f"{where}logit_bias must have shape [{v}] (one value per id)")
        if r.generator is not None and not isinstance(r.generator, (int, torch.Generator)):
            raise EngineError(f"{where}generator must be a torch.Generator or an int seed")
        self.tables.frame_limits([r.settings.max_frames], 1)  # unknown modality names -> ValueError

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

    def _group(self, cls: torch.Tensor | None, all_constrained: bool) -> int | None:
        """The head group every row's next token lies in, if they share one (int8 engines)."""
        if self.group_of_class is None or cls is None or not all_constrained or not cls.numel():
            return None
        g = self.group_of_class[cls]
        return int(g[0]) if bool((g == g[0]).all()) else None


class _Slot:
    """A request in a ContinuousBatch (the contract's Slot): its row, cache length, reply."""

    def __init__(self, request: Request, prompt_len: int, budget: int, generator: torch.Generator):
        self.request = request
        self.prompt_len = prompt_len
        self.length = prompt_len  # tokens in its cache row
        self.budget_left = budget
        self.generator = generator
        self.out: list[int] = []
        self.reason: str | None = None
        self.result: Result | None = None
        self.ended = False

    def end(self) -> None:
        """Its streamer's end(), once."""
        if not self.ended:
            self.ended = True
            if self.request.streamer is not None:
                self.request.streamer.end()


class _RowView:
    """One slot of the batch cache seen as a batch of one (a prefill writes its prompt there)."""

    def __init__(self, cache, row: int):
        self.k = [k[row:row + 1] for k in cache.k]
        self.v = [v[row:row + 1] for v in cache.v]
        self.valid = cache.valid[row:row + 1]
        self.capacity = cache.capacity
        self.length = 0
        self.padded = False


class _RowsView:
    """The first n slots of the batch cache: the running rows of a ragged decode step."""

    def __init__(self, cache, n: int, width: int, padded: bool):
        self.k = [k[:n] for k in cache.k]
        self.v = [v[:n] for v in cache.v]
        self.valid = cache.valid[:n]
        self.capacity = cache.capacity
        self.length = width
        self.padded = padded


class ContinuousBatch:
    """The engine's decoder (anygpt.lm.decoder.Decoder): running rows are the first `running`
    slots of one static cache [max_batch, KV, capacity, D]; a request that leaves hands its
    slot to the last row (its cache columns are copied), so the rows stay a prefix and every
    step works on views, never on gathered copies.

    Per-row state, as tensors over the rows: logits of the next token [n, V], ids seen [n, V]
    (repetition penalty), stop ids [n, V], logit bias [n, V], the segment constraint's state
    [n] and the sampling parameters; each request's generator, budget and reply on its _Slot."""

    def __init__(self, engine: Engine, *, capacity: int | None = None, reserve: bool = False):
        self.engine = engine
        self.max_len = engine.max_len
        self.max_batch = engine.max_batch
        self.capacity = min(int(capacity or engine.max_len), engine.max_len)
        m = engine.model
        self.cache = m.new_cache(engine.max_batch, self.capacity)
        # columns [0, zeroed) of every slot hold finite values: attention reads up to the widest
        # row, and a masked column still multiplies its value by 0 (uninitialised memory can be
        # NaN). Zeroed as the high-water mark grows, so memory is touched only as it is used.
        self.zeroed = 0
        if reserve:
            self._zero_to(self.capacity)
        self.rows: list[_Slot] = []
        v, dev = m.vocab_size, m.device
        self._v, self._dev = v, dev
        self.logits = torch.empty(0, v, dtype=torch.float32, device=dev)
        self.seen = torch.zeros(0, v, dtype=torch.bool, device=dev)
        self.stops = torch.zeros(0, v, dtype=torch.bool, device=dev)
        self.bias = torch.zeros(0, v, dtype=torch.float32, device=dev)
        self.constrained = torch.zeros(0, dtype=torch.bool, device=dev)
        self.state: SegmentState | None = None
        self._refresh()

    # ----------------------------------------------------------------- the contract
    @property
    def running(self) -> int:
        return len(self.rows)

    @property
    def has_room(self) -> bool:
        return len(self.rows) < self.max_batch

    @torch.inference_mode()
    def prefill(self, request: Request, *, checked: bool = False) -> _Slot:
        e = self.engine
        if not checked:
            e._check(request, "")
        if not self.has_room:
            raise EngineError(f"no free slot: {self.max_batch} requests are running (max_batch)")
        prompt = _prompt(request)
        n = prompt.numel()
        if n >= self.capacity:
            raise EngineError(f"the prompt is {n} tokens long; this decoder holds at most {self.capacity - 1}")
        budget = min(request.settings.max_new_tokens, self.capacity - n)
        row = len(self.rows)
        self._zero_to(n)
        view = _RowView(self.cache, row)
        logits = e.model(prompt[None].to(self._dev), torch.arange(n, device=self._dev)[None], view)  # [1, V]
        self.cache.valid[row, :n] = True
        self.cache.valid[row, n:] = False
        s = request.settings
        limits = e.tables.frame_limits([s.max_frames], 1)
        state = SegmentState(e.tables, prompt[None], torch.tensor([budget]), limits)
        seen = torch.zeros(1, self._v, dtype=torch.bool, device=self._dev)
        if s.repetition_penalty != 1.0:
            seen[0, prompt.to(self._dev)] = True
        stops = torch.zeros(1, self._v, dtype=torch.bool, device=self._dev)
        if request.stop_ids:
            stops[0, [int(i) for i in request.stop_ids]] = True
        bias = torch.zeros(1, self._v, dtype=torch.float32, device=self._dev)
        if request.logit_bias is not None:
            bias[0] = torch.as_tensor(request.logit_bias, dtype=torch.float32)
        slot = _Slot(request, n, budget, _generator(request.generator))
        self.rows.append(slot)
        self.logits = torch.cat([self.logits, logits.float()])
        self.seen = torch.cat([self.seen, seen])
        self.stops = torch.cat([self.stops, stops])
        self.bias = torch.cat([self.bias, bias])
        self.constrained = torch.cat([self.constrained, torch.tensor([s.constrained], device=self._dev)])
        if self.state is None:
            self.state = state
        else:
            for name in ("seg", "pos", "remaining", "limits"):
                setattr(self.state, name, torch.cat([getattr(self.state, name), getattr(state, name)]))
        self._refresh()
        return slot

    @torch.inference_mode()
    def step(self) -> list[_Slot]:
        if not self.rows:
            return []
        e, rows = self.engine, self.rows
        for r in rows:
            if r.reason is None and r.request.cancel is not None and r.request.cancel.is_set():
                r.reason = "cancelled"
        live = [r.reason is None for r in rows]
        failed: list[tuple[_Slot, BaseException]] = []
        if any(live):
            tokens = self._choose()
            host = tokens.tolist()
            hit = self.stops.gather(1, tokens[:, None])[:, 0].tolist()
            for j, r in enumerate(rows):
                if not live[j]:
                    continue
                r.out.append(host[j])
                r.budget_left -= 1
                if r.request.streamer is not None:
                    try:
                        r.request.streamer.put(tokens[j:j + 1].cpu())
                    except Exception as err:  # noqa: BLE001 - that request fails, the others go on
                        failed.append((r, err))
                        r.reason = "error"
                        continue
                if hit[j] or (r.request.stop_strings and self._stop_string(r)):
                    r.reason = "stop"
                elif r.budget_left <= 0:
                    r.reason = "length"
            self.state.advance(tokens)
            if self.any_penalty:
                self.seen.scatter_(1, tokens[:, None], True)
        finished = [r for r in rows if r.reason is not None]
        if finished:
            self._leave(finished)
        if self.rows:
            self._decode([r.out[-1] for r in self.rows])
        for r, err in failed:
            raise RequestFailed(r) from err
        return [r for r in finished if r.reason != "error"]

    def cancel(self, slot: _Slot) -> None:
        if slot.reason is None:
            slot.reason = "cancelled"

    def free(self, slot: _Slot) -> None:
        if slot in self.rows:
            slot.reason = slot.reason or "cancelled"
            self._leave([slot])

    def close(self) -> None:
        """End every running request (streamers' end() called) and drop the cache."""
        for r in self.rows:
            r.reason = r.reason or "cancelled"
            r.end()
        self.rows = []
        self.cache = None

    # ----------------------------------------------------------------- inside a step
    def _refresh(self) -> None:
        """Batch-wide facts, after rows joined or left."""
        settings = [r.request.settings for r in self.rows]
        self.sampling = RowSampling(settings, self._dev)
        self.any_penalty = self.sampling.any_penalty
        self.any_bias = any(r.request.logit_bias is not None for r in self.rows)
        self.all_constrained = bool(self.constrained.all()) if self.rows else True
        self.any_constrained = bool(self.constrained.any()) if self.rows else False
        self.generators = [r.generator for r in self.rows]

    def _zero_to(self, width: int) -> None:
        if width > self.zeroed:
            for t in self.cache.k + self.cache.v:
                t[:, :, self.zeroed:width] = 0
            self.zeroed = width

    def _choose(self) -> torch.Tensor:
        """The next token of every row (finished rows' choice is ignored) -> LongTensor [n]."""
        logits = self.logits
        if self.any_penalty:
            self.sampling.penalise_(logits, self.seen)
        if self.any_bias:
            logits += self.bias
        if self.any_constrained:
            mask = self.engine.tables.allowed[self.state.classes()]
            if not self.all_constrained:
                mask |= ~self.constrained[:, None]
            logits.masked_fill_(~mask, float("-inf"))
        return self.sampling.choose(logits, self.generators)

    def _stop_string(self, r: _Slot) -> bool:
        longest = max(len(s) for s in r.request.stop_strings)
        tail = self.engine.tokenizer.decode(r.out[-(longest + 2):])
        return any(s in tail for s in r.request.stop_strings)

    def _leave(self, gone: list[_Slot]) -> None:
        """Finished rows leave: results set, streamers ended, the last rows moved into the
        holes (cache columns copied) so the running rows stay a prefix of the slots."""
        for r in gone:
            r.result = Result(r.out, r.reason if r.reason != "error" else "cancelled", r.prompt_len)
        n = len(self.rows)
        gone_idx = {j for j, r in enumerate(self.rows) if r in gone}
        left = n - len(gone_idx)
        holes = sorted(j for j in gone_idx if j < left)
        movers = [j for j in range(left, n) if j not in gone_idx]
        keep = list(range(left))
        cache = self.cache
        for hole, mover in zip(holes, movers):
            length = self.rows[mover].length
            for t in cache.k + cache.v:
                t[hole, :, :length] = t[mover, :, :length]
            cache.valid[hole] = cache.valid[mover]
            keep[hole] = mover
        idx = torch.tensor(keep, dtype=torch.long, device=self._dev)
        self.rows = [self.rows[j] for j in keep]
        self.logits, self.seen, self.stops, self.bias = (t[idx] for t in (self.logits, self.seen, self.stops, self.bias))
        self.constrained = self.constrained[idx]
        for name in ("seg", "pos", "remaining", "limits"):
            setattr(self.state, name, getattr(self.state, name)[idx])
        self._refresh()
        for r in gone:
            r.end()

    def _decode(self, tokens: list[int]) -> None:
        """Feed each row its chosen token at its own next column -> the rows' next logits."""
        e, n = self.engine, len(self.rows)
        lengths = [r.length for r in self.rows]
        cols = torch.tensor(lengths, dtype=torch.long, device=self._dev)
        self.cache.valid[torch.arange(n), cols] = True
        width = max(lengths) + 1
        self._zero_to(width)
        view = _RowsView(self.cache, n, width, padded=min(lengths) != max(lengths))
        ids = torch.tensor(tokens, dtype=torch.long, device=self._dev)[:, None]
        cls = self.state.classes() if e.group_of_class is not None else None
        self.logits = e.decode_step(ids, cols[:, None], view, cols=cols,
                                    head_group=e._group(cls, self.all_constrained)).float()
        for r in self.rows:
            r.length += 1


def _prompt(r: Request) -> torch.Tensor:
    return torch.as_tensor(r.prompt, dtype=torch.long).reshape(-1)


def _generator(g: torch.Generator | int | None) -> torch.Generator:
    if isinstance(g, torch.Generator):
        return g
    return torch.Generator().manual_seed(0 if g is None else int(g))
