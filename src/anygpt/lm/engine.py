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
- `ContinuousBatch.prefill_many(requests)`: several requests join at once, in one forward per
  group of similar prompts (each request's tokens are those it gets alone); a bad request gets
  its exception in its place and the others join. A decoder keeps the keys/values of recent
  prompts (anygpt.lm.prefix_cache, PREFIX_TOKENS) and starts a prompt from the longest prefix
  it shares with one of them (the chat template's system prompt, earlier turns).
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
from anygpt.lm.prefix_cache import PrefixCache
from anygpt.lm.sampling import RowSampling

DEFAULT_THREADS = 1
# prompt tokens a decoder keeps keys/values of, so that a prompt sharing a prefix with a recent
# one (the chat template's system prompt, a conversation's earlier turns) starts from there
# (anygpt.lm.prefix_cache); anygpt-tiny: 18 KiB a token, 36 MiB in all
PREFIX_TOKENS = 2048
# prompts prefilled together run as one forward, each left-padded to the longest one's end;
# a prompt joins a group while the padding it adds is at most this many tokens (a forward's fixed
# cost is ~8 ms on anygpt-tiny, 1 core: about 28 prompt tokens computed in a group)
GROUP_PAD_TOKENS = 16
# a decode step runs as two forwards (rows split in two ranges, each attending up to its own
# widest row) when that reads more than this many fewer cache columns (rows x width): a second
# forward costs about what attending this many row-columns does (measured on anygpt-tiny)
SPLIT_COLUMNS = 4096
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
    CPU, else shared weights); network: what runs the forward pass instead of LeanLlama(lm)
    (the ONNX and llama.cpp backends: LeanLlama's interface, plus max_positions; quantize is
    then its own affair)."""

    def __init__(self, lm, layout: TokenLayout, *, max_batch: int = 8, max_len: int | None = None,
                 quantize: str | None = None, threads: int | None = None, tokenizer=None,
                 pad_id: int | None = None, copy_weights: bool | None = None, network=None):
        if max_batch < 1:
            raise EngineError(f"max_batch={max_batch}: must be at least 1")
        if network is None:
            network = LeanLlama(lm, copy_weights=copy_weights)
            if quantize is not None:
                from anygpt.lm.quantize import quantize_lean

                quantize_lean(network, quantize)
        self.model = network
        self.quantize = quantize
        self.layout = layout
        self.max_batch = max_batch
        self.max_len = int(max_len or getattr(lm.config, "max_position_embeddings", 4096))
        self.max_len = min(self.max_len, getattr(network, "max_positions", self.max_len))
        if threads is not None and threads < 1:
            raise EngineError(f"threads={threads}: must be at least 1")
        self.threads = threads
        self.tokenizer = tokenizer
        cfg_pad = getattr(lm.config, "pad_token_id", None)
        self.pad_id = pad_id if pad_id is not None else (cfg_pad if isinstance(cfg_pad, int) else 0)
        self.tables = SegmentTables(layout, self.model.vocab_size, self.model.device)
        self.group_of_class = None
        if quantize is not None and isinstance(network, LeanLlama):
            # int8 sub-heads give exactly the full int8 head's logits, so a step whose rows all
            # sit in one group (e.g. all inside speech segments) reads only that part of the head
            groups, self.group_of_class = self.tables.head_groups()
            from anygpt.lm.quantize import Int8Dense

            self.model.set_head_groups(groups, Int8Dense)
        self.cache = None  # the live decoder during generate(), else None
        # the forward of prefills and of one-token steps (same signature as LeanLlama.forward);
        # the native backend swaps in its C++ forward, and benchmarks/bench_generation.py
        # --compile torch.compile's version of the step (measured: no gain end to end on CPU)
        self.prefill_forward = self.decode_step = self.model.forward
        # True when the forward reads only the columns each row has written (native): a ragged
        # step then gains nothing from running as two forwards (_split), which read the weights
        # twice, and the cache needs no zeros past the written columns (_zero_to)
        self.per_row_attention = False
        # True when two decoders of this engine may run forwards at once, on two threads, and
        # one may adopt the other's rows (ContinuousBatch.step(adopt=...)): the torch and native
        # forwards keep no state between calls but the cache they are given; a network's (ONNX,
        # llama.cpp) may, and llama.cpp keeps its keys outside the torch cache
        self.concurrent = isinstance(network, LeanLlama)

    # ----------------------------------------------------------------- public
    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    def decoder(self, *, capacity: int | None = None, reserve: bool = False,
                prefix_tokens: int | None = None) -> "ContinuousBatch":
        """A running batch of up to max_batch requests (the decoder contract, anygpt.lm.decoder).
        capacity: KV columns per slot (default max_len); reserve: write the whole cache once now,
        so that its memory is taken at start and not as replies grow (a server's steady RSS);
        prefix_tokens: prompt tokens whose keys/values it keeps for later prompts that share
        their prefix (default PREFIX_TOKENS; 0: none)."""
        return ContinuousBatch(self, capacity=capacity, reserve=reserve, prefix_tokens=prefix_tokens)

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
                    joining = [pending.pop() for _ in range(min(len(pending), dec.max_batch - dec.running))]
                    for (i, _), slot in zip(joining, dec.prefill_many([r for _, r in joining], checked=True)):
                        if isinstance(slot, BaseException):
                            raise slot
                        index[id(slot)] = i
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


# A ContinuousBatch's tensors with one row per running request (row i: self.rows[i]), and its
# SegmentState's: rows that join are appended to each, rows that leave are taken out of each.
_ROW_TENSORS = ("logits", "seen", "stops", "bias", "constrained")
_STATE_ROWS = ("seg", "pos", "remaining", "limits")


class AdoptionRefused(EngineError):
    """Rows that cannot join a batch (ContinuousBatch.step(adopt=...)); nothing moved."""


class _Slot:
    """A request in a ContinuousBatch (the contract's Slot): its row, cache length, reply."""

    def __init__(self, request: Request, prompt_len: int, offset: int, budget: int, generator: torch.Generator):
        self.request = request
        self.prompt_len = prompt_len
        self.offset = offset  # pad columns before its prompt in its row (a batched prefill's left padding)
        self.length = offset + prompt_len  # columns of its cache row in use
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


class _RowsView:
    """Slots [first, first + n) of the batch cache as a batch of n: the running rows of a ragged
    decode step (first 0), or the rows a batched prefill fills. width: columns already filled
    (the forward writes from there); padded: some column before it is masked out."""

    def __init__(self, cache, first: int, n: int, width: int, padded: bool):
        self.cache, self.first = cache, first  # for a backend whose keys live outside torch (llamacpp)
        rows = slice(first, first + n)
        self.k = [k[rows] for k in cache.k]
        self.v = [v[rows] for v in cache.v]
        self.valid = cache.valid[rows]
        self.capacity = cache.capacity
        self.length = width
        self.padded = padded


class _Joining:
    """A checked request on its way into the batch: prompt LongTensor [n], its ids as a tuple,
    the stored prefix it starts from (reuse: p ids, at most n - 1; entry: a PrefixEntry or
    None) and `room`: the most columns of its row it may use without its budget being cut."""

    def __init__(self, index: int, request: Request, prompt: torch.Tensor, capacity: int):
        self.index, self.request, self.prompt = index, request, prompt
        self.n = prompt.numel()
        self.ids = tuple(prompt.tolist())
        self.shared, self.entry = 0, None
        self.budget = min(request.settings.max_new_tokens, capacity - self.n)
        self.room = capacity - self.budget  # the prompt may end at any column up to here

    @property
    def reuse(self) -> int:
        return min(self.shared, self.n - 1)

    @property
    def suffix(self) -> int:
        """Prompt ids this request's forward must compute."""
        return self.n - self.reuse


class ContinuousBatch:
    """The engine's decoder (anygpt.lm.decoder.Decoder): running rows are the first `running`
    slots of one static cache [max_batch, KV, capacity, D]; a request that leaves hands its
    slot to the last row (its cache columns are copied), so the rows stay a prefix and every
    step works on views, never on gathered copies.

    A row holds `offset` masked columns, then its prompt, then its reply: requests prefilled
    together (prefill_many) are left-padded to end at the same column, so one forward computes
    them all and each one's last prompt token is the forward's last column. Positions are a
    row's own (column - offset). A prompt's prefix already held by the decoder's PrefixCache is
    copied in, not computed.

    Per-row state, as tensors over the rows: logits of the next token [n, V], ids seen [n, V]
    (repetition penalty), stop ids [n, V], logit bias [n, V], the segment constraint's state
    [n] and the sampling parameters; each request's generator, budget and reply on its _Slot."""

    def __init__(self, engine: Engine, *, capacity: int | None = None, reserve: bool = False,
                 prefix_tokens: int | None = None):
        self.engine = engine
        self.max_len = engine.max_len
        self.max_batch = engine.max_batch
        self.capacity = min(int(capacity or engine.max_len), engine.max_len)
        m = engine.model
        self.cache = m.new_cache(engine.max_batch, self.capacity)
        if not getattr(m, "prefix_reuse", True):  # its keys cannot be copied out as tensors
            prefix_tokens = 0
        self.prefixes = PrefixCache(PREFIX_TOKENS if prefix_tokens is None else prefix_tokens)
        # columns [0, zeroed) of every slot hold finite values: attention reads up to the widest
        # row, and a masked column still multiplies its value by 0 (uninitialised memory can be
        # NaN). Zeroed as the high-water mark grows, so memory is touched only as it is used.
        self.zeroed = 0
        self.unfed = False  # a step(feed=False) left the rows' chosen tokens for a later forward
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

    def prefill(self, request: Request, *, checked: bool = False) -> _Slot:
        out = self.prefill_many([request], checked=checked)[0]
        if isinstance(out, BaseException):
            raise out
        return out

    @torch.inference_mode()
    def prefill_many(self, requests: Sequence[Request], *, checked: bool = False) -> list[_Slot | BaseException]:
        """Several requests join at once -> one Slot per request, or the exception that request
        alone raised (a bad request, EngineError when no slot is left for it), in order.

        Each request is checked first; the good ones are grouped (by the length of prompt each
        must compute once its stored prefix is copied in) and each group runs as one forward:
        on a small model a forward's cost is mostly per operator, so a group of short prompts
        costs little more than one. A request's logits are those of prefill([request]) up to
        float rounding (the same ids at the same positions, other rows masked out)."""
        if self.unfed:  # the running rows' chosen tokens go through the forward before others join
            self._feed()
        out: list[_Slot | BaseException | None] = [None] * len(requests)
        joining: list[_Joining] = []
        room = self.max_batch - len(self.rows)
        for i, r in enumerate(requests):
            try:
                if not checked:
                    self.engine._check(r, "")
                prompt = _prompt(r)
                if prompt.numel() >= self.capacity:
                    raise EngineError(f"the prompt is {prompt.numel()} tokens long; this decoder holds at most "
                                      f"{self.capacity - 1}")
                if len(joining) >= room:
                    raise EngineError(f"no free slot: {self.max_batch} requests are running (max_batch)")
                joining.append(_Joining(i, r, prompt, self.capacity))
            except Exception as err:  # noqa: BLE001 - that request fails, the others join
                out[i] = err
        while joining:
            # looked up again before each forward: a burst of prompts that share a prefix (the
            # chat template's system prompt) computes it once, in the first group, not per group
            for j in joining:
                j.shared, j.entry = self.prefixes.lookup(j.ids)
            group = _groups(joining)[0]
            joining = [j for j in joining if j not in group]
            try:
                slots = self._prefill_group(group)
            except Exception as err:  # noqa: BLE001 - a failed forward: its group fails, nothing joined
                slots = [err] * len(group)
            for j, slot in zip(group, slots):
                out[j.index] = slot
        return out

    @torch.inference_mode()
    def step(self, *, feed: bool = True, adopt: Sequence["ContinuousBatch"] = ()) -> list[_Slot]:
        """Every running row's next token: chosen, streamed, checked for its end, then fed to the
        forward that gives the rows' next logits -> the rows that finished (and left).
        feed=False: stop before that forward, the chosen tokens waiting in the rows (a decoder
        whose rows another one adopts: its forward is saved). adopt: decoders of the same engine
        whose rows wait so (e.g. prefilled and given their first token on another thread while
        this batch stepped); after this step's rows are chosen, each of their rows moves to the
        end of this batch as it stands (cache columns, constraint state, ids seen, stop ids,
        logit bias, generator, reply so far) and their tokens go through this step's forward with
        the others; they are left empty. A row goes on with the tokens it would have had in its
        own decoder. AdoptionRefused (nothing moved) when they cannot join."""
        if self.unfed:  # the tokens chosen by a step(feed=False) go through the forward first
            self._feed()
        if adopt:  # refused before anything moves, so a refusal leaves this batch as it was
            self._check_adoptable(adopt)
        if not self.rows and not adopt:
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
            self._cls = None
            if self.any_penalty:
                self.seen.scatter_(1, tokens[:, None], True)
        finished = [r for r in rows if r.reason is not None]
        if finished:
            self._leave(finished)
        for other in adopt:
            self._adopt_rows(other)
        self.unfed = True
        if feed:
            self._feed()
        for r, err in failed:
            raise RequestFailed(r) from err
        return [r for r in finished if r.reason != "error"]

    def _feed(self) -> None:
        """The rows' chosen tokens through the forward -> their next logits."""
        self.unfed = False
        if self.rows:
            self._decode([r.out[-1] for r in self.rows])

    def _check_adoptable(self, others: Sequence["ContinuousBatch"]) -> None:
        """AdoptionRefused unless every row of `others` can join this batch in this step."""
        for other in others:
            if other.engine is not self.engine or not self.engine.concurrent:
                raise AdoptionRefused("adopt: the rows must come from a decoder of the same engine, and the "
                                      "engine must allow concurrent decoders (Engine.concurrent)")
            if other.rows and not other.unfed:
                raise AdoptionRefused("adopt: the rows must wait with their chosen tokens (left by step(feed=False))")
            if other.rows and max(r.length for r in other.rows) > self.capacity:
                raise AdoptionRefused(f"adopt: a row is longer than this decoder's {self.capacity} columns")
        k, first = sum(len(o.rows) for o in others), len(self.rows)
        if first + k > self.max_batch:
            raise AdoptionRefused(f"no free slot: {first} requests are running, {k} more would pass max_batch "
                                  f"{self.max_batch}")

    def _adopt_rows(self, other: "ContinuousBatch") -> None:
        """Move every row of `other` (checked by _check_adoptable) to the end of this batch."""
        first = len(self.rows)
        if not other.rows:
            return
        self._zero_to(max(r.length for r in other.rows))
        for j, r in enumerate(other.rows):
            for mine, theirs in zip(self.cache.k + self.cache.v, other.cache.k + other.cache.v):
                mine[first + j, :, :r.length] = theirs[j, :, :r.length]
            self.cache.valid[first + j] = other.cache.valid[j]
        self.rows.extend(other.rows)
        self._append_rows([getattr(other, name) for name in _ROW_TENSORS], [other.state])
        other.rows, other.state, other.unfed = [], None, False
        for name in _ROW_TENSORS:
            setattr(other, name, getattr(other, name)[:0])
        other._refresh()

    def _append_rows(self, tensors: Sequence[torch.Tensor], states: list[SegmentState]) -> None:
        """The per-row tensors (in _ROW_TENSORS' order, [k, ...] each) and constraint states of k
        rows just appended to self.rows, appended to this batch's."""
        for name, new in zip(_ROW_TENSORS, tensors):
            setattr(self, name, torch.cat([getattr(self, name), new]))
        if self.state is None:
            self.state, states = states[0], states[1:]
        for name in _STATE_ROWS:
            setattr(self.state, name, torch.cat([getattr(self.state, name)] + [getattr(st, name) for st in states]))
        self._refresh()

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
        self.any_offset = any(r.offset for r in self.rows)
        self._cls = None  # the constraint classes of the rows' current state (see _classes)

    def _prefill_group(self, group: list[_Joining]) -> list[_Slot]:
        """One forward for the group's prompts, in the slots after the running rows -> their
        Slots (joined). Row j: `off_j` masked columns, then its prompt, ending at column `end`
        for every row; its stored prefix (reuse_j ids) is copied in and the forward computes
        columns [start, end) of every row, start = end - the longest suffix (a row whose prefix
        reaches past `start` recomputes those columns: same ids, same values)."""
        e, cache, dev = self.engine, self.cache, self._dev
        first, k = len(self.rows), len(group)
        end = max(j.n for j in group)
        offs = [end - j.n for j in group]
        start = min(off + j.reuse for off, j in zip(offs, group))
        self._zero_to(end)
        valid = cache.valid[first:first + k]
        valid.zero_()
        ids = torch.full((k, end - start), e.pad_id, dtype=torch.long)
        pos = torch.zeros(k, end - start, dtype=torch.long)
        for row, (off, j) in enumerate(zip(offs, group)):
            valid[row, off:end] = True
            if j.reuse:
                for kc, vc, ke, ve in zip(cache.k, cache.v, j.entry.k, j.entry.v):
                    kc[first + row, :, off:off + j.reuse] = ke[:, :j.reuse]
                    vc[first + row, :, off:off + j.reuse] = ve[:, :j.reuse]
            a = max(start, off)  # the first column of the window that holds a prompt id
            ids[row, a - start:] = j.prompt[a - off:]
            pos[row, a - start:] = torch.arange(a - off, j.n)
        # an explicit mask unless every row is a whole prompt from column 0 (plain causal then)
        view = _RowsView(cache, first, k, start, padded=start > 0 or any(offs))
        logits = e.prefill_forward(ids.to(dev), pos.to(dev), view).float()  # [k, V]
        slots, states = [], []
        seen = torch.zeros(k, self._v, dtype=torch.bool, device=dev)
        stops = torch.zeros(k, self._v, dtype=torch.bool, device=dev)
        bias = torch.zeros(k, self._v, dtype=torch.float32, device=dev)
        for row, (off, j) in enumerate(zip(offs, group)):
            r, s = j.request, j.request.settings
            limits = e.tables.frame_limits([s.max_frames], 1)
            states.append(SegmentState(e.tables, j.prompt[None], torch.tensor([j.budget]), limits))
            if s.repetition_penalty != 1.0:
                seen[row, j.prompt.to(dev)] = True
            if r.stop_ids:
                stops[row, [int(i) for i in r.stop_ids]] = True
            if r.logit_bias is not None:
                bias[row] = torch.as_tensor(r.logit_bias, dtype=torch.float32)
            slots.append(_Slot(r, j.n, off, j.budget, _generator(r.generator)))
            if j.shared < j.n:  # keep its keys/values for later prompts that share its prefix
                self.prefixes.put(j.ids, [kc[first + row, :, off:end].clone() for kc in cache.k],
                                  [vc[first + row, :, off:end].clone() for vc in cache.v])
            if j.reuse:
                self.prefixes.hits += 1
                self.prefixes.reused += j.reuse
        self.rows.extend(slots)
        constrained = torch.tensor([j.request.settings.constrained for j in group], device=dev)
        self._append_rows((logits, seen, stops, bias, constrained), states)
        return slots

    def _zero_to(self, width: int) -> None:
        """Zero the cache's columns up to `width` (torch attention reads every row up to the
        widest, and a masked column must hold a number, not whatever torch.empty left)."""
        if width > self.zeroed and not self.engine.per_row_attention:
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
            tables = self.engine.tables
            cls = self._classes()
            if not self.all_constrained:
                cls = torch.where(self.constrained, cls, tables.free_class)
            logits += tables.blocked.index_select(0, cls)
        return self.sampling.choose(logits, self.generators)

    def _classes(self) -> torch.Tensor:
        """The rows' constraint classes (LongTensor [n]), computed once per state."""
        if self._cls is None:
            self._cls = self.state.classes()
        return self._cls

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
        move_row = getattr(cache, "move_row", None)  # a cache that keeps its keys elsewhere moves them itself
        for hole, mover in zip(holes, movers):
            length = self.rows[mover].length
            if move_row is not None:
                move_row(hole, mover, length)
            for t in cache.k + cache.v:
                t[hole, :, :length] = t[mover, :, :length]
            cache.valid[hole] = cache.valid[mover]
            keep[hole] = mover
        idx = torch.tensor(keep, dtype=torch.long, device=self._dev)
        self.rows = [self.rows[j] for j in keep]
        for name in _ROW_TENSORS:
            setattr(self, name, getattr(self, name)[idx])
        for name in _STATE_ROWS:
            setattr(self.state, name, getattr(self.state, name)[idx])
        self._refresh()
        for r in gone:
            r.end()

    def _decode(self, tokens: list[int]) -> None:
        """Feed each row its chosen token at its own next column -> the rows' next logits. Rows
        [0, split) and [split, n) run as two forwards when that reads far fewer cache columns
        (see _split): attention reads every row's columns up to the widest row of its forward."""
        e, n = self.engine, len(self.rows)
        lengths = [r.length for r in self.rows]
        cols = torch.tensor(lengths, dtype=torch.long, device=self._dev)
        positions = cols - torch.tensor([r.offset for r in self.rows], device=self._dev) if self.any_offset else cols
        self.cache.valid[torch.arange(n), cols] = True
        self._zero_to(max(lengths) + 1)
        ids = torch.tensor(tokens, dtype=torch.long, device=self._dev)[:, None]
        cls = self._classes() if e.group_of_class is not None else None
        group = e._group(cls, self.all_constrained)
        logits = []
        for a, b in [(0, n)] if e.per_row_attention else _split(lengths):
            part = lengths[a:b]
            view = _RowsView(self.cache, a, b - a, max(part) + 1, padded=self.any_offset or min(part) != max(part))
            logits.append(e.decode_step(ids[a:b], positions[a:b, None], view, cols=cols[a:b],
                                        head_group=group).float())
        self.logits = logits[0] if len(logits) == 1 else torch.cat(logits)
        for r in self.rows:
            r.length += 1


def _split(lengths: list[int]) -> list[tuple[int, int]]:
    """Rows' cache lengths -> the row ranges decoded as one forward each: [(0, n)], or two
    ranges at the split that reads the fewest cache columns, rows x (widest row + 1) summed,
    when it saves more than SPLIT_COLUMNS (what a second forward costs, in columns read)."""
    n = len(lengths)
    whole = n * (max(lengths) + 1)
    head, best, at = 0, whole, 0
    tails = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        tails[i] = max(tails[i + 1], lengths[i] + 1)
    for i in range(1, n):
        head = max(head, lengths[i - 1] + 1)
        cost = i * head + (n - i) * tails[i]
        if cost < best:
            best, at = cost, i
    return [(0, n)] if whole - best <= SPLIT_COLUMNS else [(0, at), (at, n)]


def _groups(joining: list[_Joining]) -> list[list[_Joining]]:
    """Requests prefilled together -> groups, each run as one forward. By the ids each must
    compute (shortest first), a request joins the current group while the padding it adds, k x
    (its suffix - the group's longest), stays within GROUP_PAD_TOKENS, and while the group's
    longest prompt leaves every member's budget uncut (left padding takes columns)."""
    groups: list[list[_Joining]] = []
    for j in sorted(joining, key=lambda j: j.suffix):
        if groups:
            g = groups[-1]
            pad = len(g) * (j.suffix - max(x.suffix for x in g))
            end = max(j.n, max(x.n for x in g))
            if pad <= GROUP_PAD_TOKENS and all(end <= x.room for x in g + [j]):
                g.append(j)
                continue
        groups.append([j])
    return groups


def _prompt(r: Request) -> torch.Tensor:
    return torch.as_tensor(r.prompt, dtype=torch.long).reshape(-1)


def _generator(g: torch.Generator | int | None) -> torch.Generator:
    if isinstance(g, torch.Generator):
        return g
    return torch.Generator().manual_seed(0 if g is None else int(g))
