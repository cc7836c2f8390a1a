"""A C++ decode path on llama.cpp: the LLaMA exported to GGUF once (anygpt.lm.gguf_export), run
by llama.cpp through llama-cpp-python's C API, one sequence per running request.

    engine = LlamaCppEngine(lm, layout, tokenizer=tok)          # fp32 weights and KV cache
    engine = LlamaCppEngine(lm, layout, quantize="q8_0")        # llama.cpp's 8-bit weights

As with the ONNX backend, everything but the forward pass is anygpt.lm.engine.Engine's (the
batch loop, sampling, stop ids and strings, streaming, cancellation, the segment constraint
as a token mask in Python), so every segment stays well-formed. The difference: the keys and
values live inside llama.cpp, in one cache shared by all sequences, and each row of the
engine's batch names the llama.cpp sequence that holds its keys (`LlamaCppCache.seq`). A
prompt needs no padding there (positions and sequence ids make the mask), and a row that moves
in the batch only changes the sequence it names.

llama-cpp-python is a source build (CMake, a C++ compiler, minutes on 2 cores): the optional
extra `llamacpp` (`pip install 'anygpt[llamacpp]'`, or `bash scripts/setup.sh --llamacpp`).
Exports live beside the ONNX ones (ANYGPT_CACHE, default ~/.cache/anygpt, under gguf/), named
by a hash of the weights and config; never in git.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import torch

from anygpt.errors import AnyGPTError, BackendUnavailable
from anygpt.layout import TokenLayout
from anygpt.lm.engine import Engine, EngineError
from anygpt.lm.gguf_export import export_gguf
from anygpt.lm.onnx_engine import bytes_per_token, cache_root, check_supported, weights_key

EXTRA = "llamacpp"  # pip install 'anygpt[llamacpp]'
QUANTS = (None, "q8_0")


def import_llama_cpp():
    """-> the llama_cpp module (its C API), or BackendUnavailable naming the extra to install."""
    try:
        import llama_cpp
    except ImportError:
        raise BackendUnavailable(f"engine 'llamacpp' needs llama-cpp-python: pip install 'anygpt[{EXTRA}]' "
                                 "(a source build: CMake and a C++ compiler)") from None
    return llama_cpp


def exported_gguf(lm, quantize: str | None = None) -> Path:
    """The cached GGUF export of lm (made now if missing) -> its path."""
    if quantize not in QUANTS:
        raise EngineError(f"quantize={quantize!r}: engine 'llamacpp' knows None (fp32) and 'q8_0'")
    path = cache_root("gguf") / weights_key(lm) / ("decoder.gguf" if quantize is None else f"decoder.{quantize}.gguf")
    if not path.exists():
        export_gguf(lm, path, quantize=quantize)
    return path


class LlamaCppCache:
    """One llama.cpp context for a batch of `batch` rows of up to `capacity` positions each.
    seq: LongTensor [batch], the llama.cpp sequence holding each row's keys and values; it moves
    with the row (ContinuousBatch copies a leaving row's replacement with `move_row`). valid,
    capacity, length, padded: as StaticKVCache's (the engine's bookkeeping); k and v are empty:
    nothing of the cache lives in torch."""

    def __init__(self, llama, model, batch: int, capacity: int, vocab_size: int, threads: int, f32_cache: bool):
        self.llama, self.vocab_size = llama, vocab_size
        params = llama.llama_context_default_params()
        params.n_ctx = batch * capacity
        params.n_batch = params.n_ctx
        params.n_ubatch = min(512, params.n_ctx)
        params.n_seq_max = batch
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True
        params.no_perf = True
        if f32_cache:
            params.type_k = params.type_v = llama.GGML_TYPE_F32
        self.ctx = llama.llama_init_from_model(model, params)
        if not self.ctx:
            raise AnyGPTError(f"llama.cpp could not make a context of {params.n_ctx} positions")
        self.memory = llama.llama_get_memory(self.ctx)
        self.tokens = params.n_ctx
        self.batch_struct = llama.llama_batch_init(self.tokens, 0, 1)
        self.seq = torch.arange(batch)
        self.k, self.v = [], []
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool)
        self.batch, self.capacity, self.length = batch, capacity, 0
        self.padded = False

    def move_row(self, hole: int, mover: int, length: int) -> None:
        """Row `mover` becomes row `hole`: the rows swap sequence ids (hole's old one is free)."""
        self.seq[hole], self.seq[mover] = self.seq[mover].clone(), self.seq[hole].clone()

    def decode(self, seqs: list[int], tokens: list[list[int]], positions: list[list[int]]) -> np.ndarray:
        """One llama_decode: for each row, its tokens at its positions in its sequence ->
        float32 array [rows, V], the logits after each row's last token."""
        b, n = self.batch_struct, 0
        for seq, ids, pos in zip(seqs, tokens, positions):
            for j, (t, p) in enumerate(zip(ids, pos)):
                b.token[n], b.pos[n], b.n_seq_id[n] = t, p, 1
                b.seq_id[n][0] = seq
                b.logits[n] = j == len(ids) - 1
                n += 1
        if n > self.tokens:
            raise AnyGPTError(f"KV cache overflow: {n} tokens in one step for a context of {self.tokens}")
        b.n_tokens = n
        rc = self.llama.llama_decode(self.ctx, b)
        if rc != 0:
            raise AnyGPTError(f"llama.cpp's decode failed (code {rc}; 1: no room left in its KV cache)")
        out = self.llama.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(out, shape=(len(seqs), self.vocab_size)).copy()

    def forget(self, seq: int) -> None:
        self.llama.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def close(self) -> None:
        if self.ctx:
            self.llama.llama_batch_free(self.batch_struct)
            self.llama.llama_free(self.ctx)
            self.ctx = None

    def __del__(self):
        self.close()


class LlamaCppLlama:
    """The decoder as Engine's loop sees it (LeanLlama's interface): forward(ids, positions,
    cache) -> logits of each row's last token, new_cache(batch, capacity), vocab_size, device,
    dtype. quantize: None (fp32 weights and KV cache) or "q8_0" (8-bit weights, fp16 cache)."""

    prefix_reuse = False  # the engine's PrefixCache copies torch keys; these live in llama.cpp

    def __init__(self, lm, *, threads: int = 1, quantize: str | None = None):
        self.llama = import_llama_cpp()
        check_supported(lm, "llamacpp")
        cfg = lm.config
        self.vocab_size = lm.lm_head.weight.shape[0]
        self.max_positions = int(cfg.max_position_embeddings)
        self.dtype, self.device = torch.float32, torch.device("cpu")
        self.threads, self.quantize = threads, quantize
        self.path = exported_gguf(lm, quantize)
        self.llama.llama_backend_init()
        self.llama.llama_log_set(_quiet, ctypes.c_void_p(0))
        params = self.llama.llama_model_default_params()
        # no repacked weight layouts (AMX, interleaved q8_0): measured here, the AMX path crashes
        # the process (a VM that does not grant the AMX tile state), the plain CPU kernels do not
        params.use_extra_bufts = False
        self.model = self.llama.llama_model_load_from_file(str(self.path).encode(), params)
        if not self.model:
            raise AnyGPTError(f"{self.path}: llama.cpp could not load this export")
        self._bytes = bytes_per_token(lm, 34 / 32 if quantize == "q8_0" else 4)  # q8_0: 34 bytes a block of 32

    def new_cache(self, batch: int, capacity: int) -> LlamaCppCache:
        if capacity > self.max_positions:
            raise EngineError(f"{capacity} positions exceed the model's {self.max_positions}")
        return LlamaCppCache(self.llama, self.model, batch, capacity, self.vocab_size, self.threads,
                             f32_cache=self.quantize is None)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, view, *, last_only: bool = True,
                head_group: int | None = None, cols: torch.Tensor | None = None) -> torch.Tensor:
        """ids, positions LongTensor [B, T]; view: rows [first, first + B) of a LlamaCppCache
        (anygpt.lm.engine._RowsView) -> logits FloatTensor [B, V] after each row's last id.
        A prefill (cols None) runs each row's valid columns of [view.length, view.length + T)
        in a fresh sequence; a decode step (cols LongTensor [B], T == 1) appends one id per row."""
        if not last_only:
            raise EngineError("the llamacpp decoder returns the last column's logits only")
        cache: LlamaCppCache = view.cache
        rows = range(view.first, view.first + ids.shape[0])
        seqs = [int(cache.seq[r]) for r in rows]
        if cols is not None:
            tokens, pos = ids.tolist(), positions.tolist()
        else:
            if view.length == 0:
                for s in seqs:  # a new request: whatever the sequence held before is gone
                    cache.forget(s)
            t = ids.shape[1]
            keep = view.valid[:, view.length:view.length + t].tolist()
            id_rows, pos_rows = ids.tolist(), positions.tolist()
            tokens = [[i for i, k in zip(r, m) if k] for r, m in zip(id_rows, keep)]
            pos = [[p for p, k in zip(r, m) if k] for r, m in zip(pos_rows, keep)]
        return torch.from_numpy(cache.decode(seqs, tokens, pos))

    __call__ = forward

    def weight_bytes_per_token(self) -> int:
        """Bytes one decode step reads: every weight but the embedding matrix (8.5 bits each in
        q8_0), plus one fp32 row of it."""
        return self._bytes


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet(level, text, user_data):
    """llama.cpp's log callback: drop its load-time chatter (errors reach us as return codes)."""


class LlamaCppEngine(Engine):
    """anygpt.lm.engine.Engine with its forward pass in llama.cpp. quantize: None (fp32
    weights and KV cache: HF generate's greedy tokens up to float rounding) or "q8_0"."""

    def __init__(self, lm, layout: TokenLayout, *, max_batch: int = 8, max_len: int | None = None,
                 quantize: str | None = None, threads: int | None = None, tokenizer=None, pad_id: int | None = None):
        if quantize == "int8":
            quantize = "q8_0"  # the int8 of this backend
        network = LlamaCppLlama(lm, threads=threads or 1, quantize=quantize)
        super().__init__(lm, layout, max_batch=max_batch, max_len=max_len, quantize=quantize, threads=threads,
                         tokenizer=tokenizer, pad_id=pad_id, network=network)
