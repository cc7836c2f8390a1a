"""A C++ decode path of anygpt's own: each decode step, and each prefill, is one call into a
small C++ library (`native/decode_step.cpp`) that runs the whole int8 LLaMA forward, embedding
to logits.

    engine = NativeEngine(lm, layout, tokenizer=tok)      # builds the library on first use

Why: at anygpt-tiny's size (18M parameters) a torch decode step is some 175 operator calls,
and their Python and dispatch overhead costs more than the arithmetic; the existing runtimes
measured here (ONNX Runtime, llama.cpp) pay a similar fixed cost per step (docs/generation.md).
The C++ forward reads the int8 engine's own weights (anygpt.lm.quantize: int8 per output
row) and writes its bfloat16 KV cache; a prefill runs as the tokens of each row in turn (only
the real ones, not the left padding), so it needs no mask of its own. Activations are
quantized to int8 per row (the torch path quantizes per tensor), so greedy tokens match the
torch int8 engine's only up to near-ties; bench_generation prints the agreement with HF.

Everything else is anygpt.lm.engine.Engine's: the batch loop, sampling, stop ids and strings,
streaming, cancellation and the segment constraint (a token mask on the logits), so every
segment stays well-formed. The forward is single-threaded; two threads may call it at once
(each gets its own scratch buffers).

The library is compiled with the system's C++ compiler (CXX, else g++ or c++; `-O3
-march=native`, a few seconds) into ANYGPT_CACHE (default ~/.cache/anygpt)/native/, named by
a hash of the source, the flags, the compiler and the CPU, written to a temporary file and
renamed. Without a compiler the engine is unavailable and "auto" falls back.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

import torch

from anygpt.errors import BackendUnavailable
from anygpt.files import atomic_path
from anygpt.layout import TokenLayout
from anygpt.lm.engine import Engine, EngineError
from anygpt.lm.onnx_engine import cache_root, check_supported
from anygpt.lm.quantize import Int8Dense

SOURCE = Path(__file__).with_name("native") / "decode_step.cpp"
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")
MAX_HEAD_DIM = 1024  # the C++ side's rotary scratch
_LOCK = threading.Lock()
_LIBRARY: ctypes.CDLL | None = None


def compiler() -> str:
    """The C++ compiler to build with, or BackendUnavailable saying how to get one."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return name
    raise BackendUnavailable("engine 'native' needs a C++ compiler to build its step once: "
                             "install g++ (Debian: apt install g++) or set CXX")


def library_path(cxx: str, flags: tuple[str, ...] = FLAGS) -> Path:
    """Where the library built from SOURCE with `cxx` and `flags` on this CPU lives (a hash of all four)."""
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(" ".join((cxx,) + flags).encode())
    h.update(subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.encode())
    try:
        with open("/proc/cpuinfo") as f:
            h.update(next(line for line in f if line.startswith("flags")).encode())
    except (OSError, StopIteration):
        pass  # not Linux: -march=native still matches the machine that builds
    return cache_root("native") / f"decode_step-{h.hexdigest()[:16]}.so"


def build_library(flags: tuple[str, ...] = FLAGS) -> ctypes.CDLL:
    """The step library built with `flags` (compiled now unless cached), its C signatures declared."""
    cxx = compiler()
    path = library_path(cxx, flags)
    if not path.exists():
        with atomic_path(path) as tmp:
            done = subprocess.run([cxx, *flags, str(SOURCE), "-o", str(tmp)], capture_output=True, text=True)
            if done.returncode != 0:
                raise BackendUnavailable(f"engine 'native': {cxx} could not build {SOURCE.name}: "
                                         f"{done.stderr.strip()[-800:]}")
    lib = ctypes.CDLL(str(path))
    p, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_float
    lib.anygpt_native_new.restype = p
    lib.anygpt_native_new.argtypes = [p, f32, f32, p, p, p, p, p, p, p, p]
    lib.anygpt_native_free.argtypes = [p]
    lib.anygpt_native_forward.restype = ctypes.c_int
    lib.anygpt_native_forward.argtypes = [p, i32, p, p, p, p, p, p, i64, i64, p, i64, p, i32, i32, p]
    return lib


def load_library() -> ctypes.CDLL:
    """The step library of this process (built with FLAGS, once)."""
    global _LIBRARY
    with _LOCK:
        if _LIBRARY is None:
            _LIBRARY = build_library()
        return _LIBRARY


def int8_parts(proj: Int8Dense) -> tuple[torch.Tensor, torch.Tensor]:
    """An Int8Dense's weight as (int8 [out, in], float scale [out])."""
    q = torch.ops.quantized.linear_unpack(proj.packed)[0]
    return q.int_repr(), q.q_per_channel_scales().float()


def pack(w: torch.Tensor, scale: torch.Tensor, index: torch.Tensor | None = None) -> list[torch.Tensor | None]:
    """int8 W [out, in] and its scales -> the C++ step's packed matrix: [W as int8 [ceil(out/16),
    ceil(in/4), 16, 4] (16 outputs x 4 inputs per 64 bytes, zero-padded), scale float and row sums
    int32 [ceil(out/16) * 16], index (the output column of each row, or None)]."""
    out, n = w.shape
    rows, cols = -(-out // 16) * 16, -(-n // 4) * 4
    padded = torch.zeros(rows, cols, dtype=torch.int8)
    padded[:out, :n] = w
    blocks = padded.view(rows // 16, 16, cols // 4, 4).permute(0, 2, 1, 3).contiguous()
    scales = torch.zeros(rows, dtype=torch.float32)
    scales[:out] = scale
    return [blocks, scales, padded.sum(1, dtype=torch.int32), index]


class NativeForward:
    """LeanLlama.forward for an int8 LeanLlama, in one C++ call.

    model: a LeanLlama after anygpt.lm.quantize.quantize_lean (int8 projections, bf16 cache).
    Called like LeanLlama.forward: (ids, positions LongTensor [B, T], cache, cols=LongTensor
    [B] or None (ragged decode steps, T == 1), head_group=int or None) -> logits FloatTensor
    [B, V] of the last column. Full logits (last_only=False) and a cache overflow (its error)
    go to the model's torch forward. lib: the step library (default: load_library())."""

    def __init__(self, model, lib: ctypes.CDLL | None = None):
        self.lib = lib or load_library()
        self.model = model
        if model.kv_dtype != torch.bfloat16 or not isinstance(model.head, Int8Dense):
            raise EngineError("engine 'native' runs the int8 engine's model (quantize='int8')")
        if model.head_dim > MAX_HEAD_DIM:
            raise BackendUnavailable(f"engine 'native' cannot hold this model: its head dim {model.head_dim} is over "
                                     f"{MAX_HEAD_DIM} (use engine 'engine')")
        cos, sin = model._rope_tables(int(getattr(model.config, "max_position_embeddings", 0) or 1))
        self.positions = cos.shape[0]
        floats = [model.embed, model.norm, torch.stack([w["ln1"] for w in model.layers]),
                  torch.stack([w["ln2"] for w in model.layers]), cos, sin]
        self.keep = [t.detach().float().contiguous() for t in floats]  # the C++ side reads these in place
        projections = [w[name] for w in model.layers for name in ("qkv", "o", "gate_up", "down")] + [model.head]
        parts = [int8_parts(p) for p in projections]
        head, head_scale = parts[-1]
        mats = [pack(*part) for part in parts]
        mats += [pack(head[ids], head_scale[ids], ids.cpu().contiguous()) for ids, _ in model.head_groups]
        pointers, shapes = [], []
        for (w, scale, rowsum, index), proj in zip(mats, projections + [None] * len(model.head_groups)):
            self.keep += [t for t in (w, scale, rowsum, index) if t is not None]
            pointers += [w.data_ptr(), scale.data_ptr(), rowsum.data_ptr(), index.data_ptr() if index is not None else None]
            shapes += [len(index), head.shape[1]] if proj is None else [proj.out_features, proj.in_features]
        dims = torch.tensor([len(model.layers), model.embed.shape[1], model.heads, model.kv_heads, model.head_dim,
                             model.intermediate, model.vocab_size, len(model.head_groups)], dtype=torch.int32)
        shapes = torch.tensor(shapes, dtype=torch.int32)
        self.keep += [dims, shapes]
        self._new_args = (dims.data_ptr(), model.eps, model.scaling, *(t.data_ptr() for t in self.keep[:6]),
                          (ctypes.c_void_p * len(pointers))(*pointers), shapes.data_ptr())
        # a handle holds the forward's scratch buffers, so each thread that calls gets its own
        # (a server prefills on one thread while it steps on another); the weights are shared
        self._local = threading.local()
        self._handles: list[int] = []
        self._handles_lock = threading.Lock()

    @property
    def handle(self) -> int:
        """This thread's handle of the C++ model."""
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = self.lib.anygpt_native_new(*self._new_args)
            with self._handles_lock:
                self._handles.append(handle)
        return handle

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, cache, *, last_only: bool = True,
                 head_group: int | None = None, cols: torch.Tensor | None = None) -> torch.Tensor:
        b, t = ids.shape
        if cache.length + (t if cols is None else 0) > cache.capacity or not last_only:
            return self.model.forward(ids, positions, cache, last_only=last_only, head_group=head_group, cols=cols)
        slots = out_rows = None
        if t > 1:  # a prefill: every real (not padding) column of every row, row by row
            real = cache.valid[:, cache.length:cache.length + t] if cache.padded else torch.ones(b, t, dtype=torch.bool)
            slots, at = real.nonzero(as_tuple=True)
            ids, positions, cols = ids[slots, at], positions[slots, at], cache.length + at
            out_rows = torch.nonzero(at == t - 1)[:, 0]  # every prompt ends at the window's last column
            if len(out_rows) != b:
                raise EngineError("a prefill row has no token in its last column")
            cache.length += t
        elif cols is None:  # every row writes the next column
            cols = torch.full((b,), cache.length, dtype=torch.long)
            cache.length += 1
        if int(positions.max()) >= self.positions:
            raise EngineError(f"position {int(positions.max())} is past the model's {self.positions}")
        ids, positions, cols = (x.reshape(-1).contiguous() for x in (ids, positions, cols))
        layers = len(cache.k)
        kc = (ctypes.c_void_p * layers)(*(k.data_ptr() for k in cache.k))
        vc = (ctypes.c_void_p * layers)(*(v.data_ptr() for v in cache.v))
        valid = cache.valid if cache.padded else None
        out = torch.empty(b, self.model.vocab_size, dtype=torch.float32)
        rc = self.lib.anygpt_native_forward(
            self.handle, len(ids), ids.data_ptr(), positions.data_ptr(), cols.data_ptr(),
            slots.data_ptr() if slots is not None else None, kc, vc, cache.k[0].stride(0), cache.capacity,
            valid.data_ptr() if valid is not None else None, valid.stride(0) if valid is not None else 0,
            out_rows.data_ptr() if out_rows is not None else None, b, -1 if head_group is None else head_group,
            out.data_ptr())
        if rc != 0:
            raise EngineError(f"engine 'native': the C++ forward refused the step (code {rc})")
        return out

    def __del__(self):
        handles, self._handles = getattr(self, "_handles", []), []
        for handle in handles:
            self.lib.anygpt_native_free(handle)


class NativeEngine(Engine):
    """anygpt.lm.engine.Engine (int8) whose prefills and decode steps run in anygpt's C++
    forward (NativeForward).
    quantize: "int8" or None (both int8: the C++ step has no fp32 form)."""

    def __init__(self, lm, layout: TokenLayout, *, max_batch: int = 8, max_len: int | None = None,
                 quantize: str | None = "int8", threads: int | None = None, tokenizer=None,
                 pad_id: int | None = None):
        if quantize not in (None, "int8"):
            raise EngineError(f"quantize={quantize!r}: engine 'native' runs int8 only")
        check_supported(lm, "native")
        load_library()  # BackendUnavailable before any work when there is no compiler
        super().__init__(lm, layout, max_batch=max_batch, max_len=max_len, quantize="int8", threads=threads,
                         tokenizer=tokenizer, pad_id=pad_id)
        self.prefill_forward = self.decode_step = NativeForward(self.model)
        self.per_row_attention = True
