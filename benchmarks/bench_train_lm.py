"""Training speed of `anygpt train lm`'s step: tokens/s and model FLOPs utilisation (MFU)
against this machine's measured bf16 matmul peak.

    python benchmarks/bench_train_lm.py                       # tiny preset, every option, SmolLM2 full and LoRA
    python benchmarks/bench_train_lm.py --threads 1 --skip-smollm2
    python benchmarks/bench_train_lm.py --only tiny:bf16

Each row runs the trainer's own step (`anygpt.train.lm.token_loss`, AdamW, clipping) on random
blocks: 1 warm-up step, then --steps timed ones. Model FLOPs per trained token follow PaLM's
count: 6 x (parameters outside the input embedding) + 12 x layers x hidden x sequence length
(attention). MFU = FLOPs per token x tokens/s / the bf16 peak, the peak being the best of five
2048^3 bf16 matmuls with the same threads. Run it on a quiet machine (it prints the load average
before and after).
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def matmul_peak(threads: int) -> float:
    """Measured bf16 GFLOP/s of a 2048^3 matmul (best of 5)."""
    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048, dtype=torch.bfloat16)
    b = torch.randn(2048, 2048, dtype=torch.bfloat16)
    a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def flops_per_token(model, seq: int) -> float:
    cfg = model.config
    emb = model.get_input_embeddings().weight.numel()
    params = sum(p.numel() for p in model.parameters())
    if cfg.tie_word_embeddings:  # the head is the embedding matrix: it is computed, count it once
        params_compute = params
    else:
        params_compute = params - emb
    return 6 * params_compute + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq


def tiny_model(vocab: int, attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    from anygpt.train.lm import MODEL_SIZES

    cfg = LlamaConfig(vocab_size=vocab, max_position_embeddings=4608, tie_word_embeddings=False,
                      attn_implementation=attn, **MODEL_SIZES["tiny"])
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def smollm2(lora: int):
    from anygpt.lm.base_lm import load_base_lm
    from anygpt.train.lm import apply_lora

    model, tok = load_base_lm("smollm2-135m-instruct")
    if lora:
        model = apply_lora(model, lora, 2 * lora, list(range(len(tok) - 100, len(tok))))
    return model


def time_steps(model, *, seq: int, batch: int, steps: int, bf16: bool, fused: bool, compile: bool,
               checkpointing: bool) -> float:
    """tokens/s of the trainer's step on random ids."""
    from anygpt.train.lm import token_loss

    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=fused or None)
    run = torch.compile(model) if compile else model
    vocab = model.get_input_embeddings().weight.shape[0]
    gen = torch.Generator().manual_seed(0)

    def step():
        ids = torch.randint(3, vocab, (batch, seq), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, n = token_loss(run, ids, ids)
        (loss.sum() / n.sum()).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch * seq / (time.perf_counter() - t)


CONFIGS = {  # name -> (model, seq, batch, options)
    "tiny:fp32": ("tiny", 4500, 1, dict(bf16=False)),
    "tiny:bf16": ("tiny", 4500, 1, dict(bf16=True)),
    "tiny:bf16-batch2": ("tiny", 4500, 2, dict(bf16=True)),
    "tiny:bf16-eager-attention": ("tiny-eager", 4500, 1, dict(bf16=True)),
    "tiny:bf16-fused-adamw": ("tiny", 4500, 1, dict(bf16=True, fused=True)),
    "tiny:bf16-checkpointing": ("tiny", 4500, 1, dict(bf16=True, checkpointing=True)),
    "tiny:bf16-compile": ("tiny", 4500, 1, dict(bf16=True, compile=True)),
    "smollm2:full-bf16": ("smollm2", 1024, 1, dict(bf16=True)),
    "smollm2:lora16-bf16": ("smollm2-lora", 1024, 1, dict(bf16=True)),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--vocab", type=int, default=9644, help="tiny preset vocabulary (default: anygpt-tiny's 9,644)")
    p.add_argument("--only", nargs="*", help=f"configs to run: {', '.join(CONFIGS)}")
    p.add_argument("--skip-smollm2", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"load average before: {os.getloadavg()}")
    peak = matmul_peak(a.threads)
    print(f"bf16 matmul 2048^3 peak, {a.threads} threads: {peak:.0f} GFLOP/s\n")
    print(f"{'config':<28} {'params':>8} {'seq x batch':>11} {'tokens/s':>9} {'GFLOP/s':>8} {'MFU':>6}")
    for name, (kind, seq, batch, opts) in CONFIGS.items():
        if a.only and name not in a.only or a.skip_smollm2 and kind.startswith("smollm2"):
            continue
        if kind.startswith("tiny"):
            model = tiny_model(a.vocab, "eager" if kind == "tiny-eager" else "sdpa")
        else:
            model = smollm2(16 if kind == "smollm2-lora" else 0)
        opts = {"fused": False, "compile": False, "checkpointing": False, **opts}
        tps = time_steps(model, seq=seq, batch=batch, steps=a.steps, **opts)
        gflops = flops_per_token(model, seq) * tps / 1e9
        n = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:<28} {n:>7.1f}M {seq:>6} x {batch:<3} {tps:>9.0f} {gflops:>8.0f} {gflops / peak:>6.1%}", flush=True)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
