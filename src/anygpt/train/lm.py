"""`anygpt train lm`: pretrain or fine-tune an AnyGPT-layout causal LM on block shards.

    # from scratch, the tiny preset, on this CPU
    anygpt train lm --blocks data/tiny-seq/blocks-pretrain --val-blocks data/tiny-seq/blocks-val \\
        --preset tiny --out runs/lm-pretrain --steps 3000 --export runs/lm-pretrain/model
    # chat fine-tuning of that model (labels in chat blocks are masked to assistant turns)
    anygpt train lm --stage chat --blocks data/tiny-seq/blocks-chat --init runs/lm-pretrain/model \\
        --out runs/lm-chat --steps 500 --lr 3e-4 --export runs/lm-chat/model
    # LoRA on a real pretrained LM, its vocabulary expanded to the blocks' layout
    anygpt train lm --blocks data/smol-blocks --init smollm2-135m-instruct --lora 16 --out runs/smol-lora
    # several processes or machines (DDP, FSDP): the same command under accelerate
    accelerate launch --config_file configs/accelerate/ddp-cpu.yaml -m anygpt.train.lm --blocks ... --out ...

The model is a HF `LlamaForCausalLM` from a size preset (`--preset tiny|small|llama2-7b`, built
for the blocks' vocabulary) or `--init`: one of our model folders, a released AnyGPT folder,
any HF causal-LM folder with its tokenizer, a GGUF file, or a base named in
`anygpt.lm.base_lm.BASE_MODELS`; its vocabulary is expanded to the blocks' layout with
`anygpt.lm.expand` (new rows random, the paper's recipe), and must then equal the blocks'
vocabulary exactly. `--lora R` trains LoRA adapters of rank R (peft) plus the embedding and
head rows of the added tokens; export merges them.

The loss is the mean cross-entropy over every labelled token of the global batch (pretraining
blocks label every token; chat blocks only assistant turns), the same for any split of the
batch into processes and micro-batches. Checkpoints, resume, logging and the flags shared with
every trainer are `anygpt.train.core`'s; the block stream is `anygpt.train.lm_data`'s.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anygpt.errors import AnyGPTError, CheckpointError, UsageError
from anygpt.train.core import RunOptions, TrainingRun, add_run_args, lr_at
from anygpt.cli_flags import set_threads
from anygpt.train.lm_data import (BlockDataError, BlockSource, BlockStream, tokenizer_fingerprint,
                                  validation_blocks)

# Llama shapes; the vocabulary comes from the blocks. tiny: ~18M parameters with a 10k vocabulary.
MODEL_SIZES: dict[str, dict] = {
    "micro": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),  # tests
    "tiny": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6),
    "small": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      rms_norm_eps=1e-5),
}
# per stage: (learning rate, warmup fraction) defaults
STAGES = {"pretrain": (1e-3, 0.03), "chat": (3e-4, 0.03)}
EXPORT_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class BuiltModel:
    model: torch.nn.Module
    tokenizer: object
    specs: list
    source: str  # "preset:tiny" or the --init path


def build_preset(name: str, tokenizer, block_len: int, seed: int, **overrides):
    """A random LlamaForCausalLM of preset `name` for the tokenizer's vocabulary; overrides:
    LlamaConfig fields that replace the preset's (hidden_size=256, num_hidden_layers=4 ...)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if name not in MODEL_SIZES:
        raise AnyGPTError(f"--preset: unknown preset {name!r}; choose from {', '.join(MODEL_SIZES)}")
    shape = {**MODEL_SIZES[name], **overrides}
    shape.setdefault("num_key_value_heads", shape["num_attention_heads"])
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=-(-block_len // 512) * 512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, **shape)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_init(init: str, specs, seed: int, new_rows: str = "mean"):
    """--init -> (model, tokenizer expanded to `specs`; new embedding/head rows `new_rows`)."""
    from anygpt.lm.expand import expand_vocabulary
    from anygpt.lm.base_lm import load_base_lm

    model, tokenizer = load_base_lm(init)
    expand_vocabulary(model, tokenizer, specs, init=new_rows, seed=seed)
    return model, tokenizer


def run_specs(sources: list[BlockSource], fingerprint: str) -> list:
    """The modality specs of a run's block folders, which must all have the tokenizer of
    `fingerprint` (the first's): their union, in order of first appearance (a folder built from
    some datasets only, e.g. image pairs alone, records fewer modalities than the others)."""
    specs: dict = {}
    for i, s in enumerate(sources):
        own = s.specs()
        if (i and tokenizer_fingerprint(s.tokenizer()) != fingerprint) or any(specs.get(x.name, x) != x for x in own):
            raise BlockDataError(f"{s.folder}: built with another vocabulary than {sources[0].folder}; "
                                 "all block folders of a run must share one tokenizer (see docs/sequences.md)")
        for x in own:
            specs.setdefault(x.name, x)
    return list(specs.values())


def build_model(a: argparse.Namespace, sources: list[BlockSource]) -> BuiltModel:
    blocks_tok = sources[0].tokenizer()
    fp = tokenizer_fingerprint(blocks_tok)
    specs = run_specs(sources, fp)
    if a.init:
        model, tok = load_init(a.init, specs, a.seed, a.new_rows)
        if tokenizer_fingerprint(tok) != fp:
            mine, theirs = tok.get_vocab(), blocks_tok.get_vocab()
            diff = [t for t in theirs if mine.get(t) != theirs[t]][:3]
            raise BlockDataError(
                f"{sources[0].folder}: these blocks were built for another vocabulary than --init {a.init} "
                f"({len(theirs)} vs {len(mine)} tokens after expansion; first differences {diff}); build the "
                f"blocks with that model's tokenizer (\"text_tokenizer\": {{\"path\": \"{a.init}\"}} in the blocks config)")
    else:
        model, tok = build_preset(a.preset, blocks_tok, sources[0].block_len, a.seed), blocks_tok
    if a.code_init:
        code_rows_from_tokenizers(model, tok, specs, a.tokenizers, a.seed)
    return BuiltModel(model, tok, specs, a.init or f"preset:{a.preset}")


def code_rows_from_tokenizers(model, tokenizer, specs, tokenizer_values: list[str], seed: int) -> list[str]:
    """--code-init: the media codes' embedding and head rows from the --tokenizers' code vectors
    (anygpt.lm.code_init); -> the modalities whose rows were set."""
    from anygpt.layout import TokenLayout
    from anygpt.lm.code_init import init_code_rows
    from anygpt.modalities import load_tokenizer

    layout = TokenLayout.from_tokenizer(tokenizer, specs)
    vectors = {m: load_tokenizer(m, e["loader"]).lm_code_vectors() for m, e in tokenizer_entries(tokenizer_values, specs).items()}
    try:
        return init_code_rows(model, layout, vectors, seed=seed)
    except ValueError as e:
        raise UsageError(f"--code-init: {e}: the blocks were coded by another tokenizer than --tokenizers names") from None


def apply_lora(model, rank: int, alpha: float, new_rows: list[int]):
    """LoRA adapters on every projection; the added tokens' embedding and head rows train too."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise AnyGPTError("--lora needs the peft package: pip install peft") from None
    trainable = {"embed_tokens": new_rows}
    if not model.config.tie_word_embeddings:
        trainable["lm_head"] = new_rows
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS),
                     trainable_token_indices=trainable, task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def token_loss(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ids, labels LongTensor [B, L] (labels -100 where no loss) -> (summed CE FloatTensor [B],
    labelled tokens LongTensor [B]), per block. Label i is the token at position i: position
    i-1 predicts it."""
    logits = model(input_ids=ids).logits[:, :-1]
    target = labels[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                         ignore_index=-100, reduction="none")
    return ce.view(target.shape).sum(1), (target != -100).sum(1)


class LMTrainer:
    """The recipe: accelerate, the block stream, the step and the evaluation."""

    def __init__(self, a: argparse.Namespace):
        from accelerate import Accelerator

        self.a = a
        set_threads(a.threads)
        # mixed precision is ours (torch.autocast), not accelerate's: its state is one per process
        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        self.autocast = lambda: torch.autocast(self.acc.device.type, dtype=torch.bfloat16,
                                               enabled=a.precision == "bf16")
        if self.acc.distributed_type.name == "DEEPSPEED":
            raise AnyGPTError("DeepSpeed is not supported (its checkpoints are per-rank pickles); use "
                              "configs/accelerate/fsdp.yaml for sharded training (docs/training.md)")
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.sources = [BlockSource.parse(s) for s in a.blocks]
        self.val_sources = [BlockSource.parse(s) for s in a.val_blocks]
        built = build_model(a, self.sources)
        self.tokenizer, self.specs, self.model_source = built.tokenizer, built.specs, built.source
        model = built.model
        self.vocab = model.get_input_embeddings().weight.shape[0]
        self.stream = BlockStream(self.sources, seed=a.seed, vocab_size=self.vocab)
        for v in self.val_sources:
            if v.block_len != self.stream.block_len:
                raise BlockDataError(f"{v.folder}: block length {v.block_len}, the training blocks' is "
                                     f"{self.stream.block_len}")
        if a.grad_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if a.lora:
            first_new = len(self.tokenizer) - self._added_count()
            model = apply_lora(model, a.lora, a.lora_alpha or 2 * a.lora, list(range(first_new, len(self.tokenizer))))
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=a.fused_adam or None)
        self.model, self.opt = self.acc.prepare(model, opt)
        if a.compile:
            self.model = torch.compile(self.model)
        self.global_batch = self.world * a.batch * a.accum
        self._merged = None  # the model to export (LoRA merged once)
        self._dataset_sums = torch.zeros(len(self.stream.datasets), 2, dtype=torch.float64)
        warmup = a.warmup if a.warmup >= 1 else int(a.warmup * a.steps)
        self.run = TrainingRun(
            RunOptions.from_args(a), modules={"model": self.model}, optimizer=self.opt, config=self.run_config(),
            lr=lambda s: lr_at(s, a.steps, a.lr, max(1, warmup), a.min_lr_ratio), desc=f"lm {a.stage}",
            is_main=self.acc.is_main_process, get_state=self.get_state, set_state=self.set_state,
            barrier=self.acc.wait_for_everyone)

    def _added_count(self) -> int:
        """How many tokens the expansion added to the --init model's vocabulary."""
        from anygpt.layout import added_tokens

        return len(added_tokens(self.specs, chat=True))

    def run_config(self) -> dict:
        a = self.a
        return {"stage": a.stage, "model": self.model_source, "vocab": self.vocab,
                "blocks": [[str(s.folder), s.weight] for s in self.sources], "block_len": self.stream.block_len,
                "global_batch": self.global_batch, "lr": a.lr, "warmup": a.warmup, "min_lr_ratio": a.min_lr_ratio,
                "weight_decay": a.weight_decay, "steps": a.steps, "seed": a.seed, "lora": a.lora,
                "lora_alpha": a.lora_alpha, "precision": a.precision}

    # ------------------------------------------------------------- state
    def get_state(self) -> tuple[dict, dict]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        model = self.acc.unwrap_model(self.model)
        msd, osd = get_state_dict(model, self.opt.optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True, ignore_frozen_params=True))
        return {"model": msd}, osd

    def set_state(self, modules: dict, opt: dict | None) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        model = self.acc.unwrap_model(self.model)
        try:
            set_state_dict(model, self.opt.optimizer, model_state_dict=modules["model"], optim_state_dict=opt,
                           options=StateDictOptions(full_state_dict=True, strict=False))
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{self.run.out}: the checkpoint does not fit this model ({str(e)[:200]})") from None

    # ------------------------------------------------------------- steps
    def train_step(self, step: int) -> dict:
        """One optimiser step over the global batch; -> loss, grad norm, and each dataset's mean
        loss since the last logged step (on logged steps)."""
        a = self.a
        micro = [self.stream.batch(self.stream.positions(step, m, a.batch, a.accum, self.rank, self.world))
                 for m in range(a.accum)]
        count = torch.tensor(float(sum(int((lab[:, 1:] != -100).sum()) for _, lab, _ in micro)))
        total = float(self.acc.reduce(count, reduction="sum")) if self.world > 1 else float(count)
        sums = torch.zeros(len(self.stream.datasets), 2, dtype=torch.float64)  # per dataset: CE, tokens
        for m, (ids, labels, names) in enumerate(micro):
            sync = m == a.accum - 1
            ctx = self.acc.no_sync(self.model) if not sync and self.world > 1 else nullcontext()
            with ctx, self.autocast():
                ce, n = token_loss(self.model, ids.to(self.acc.device), labels.to(self.acc.device))
                self.acc.backward(ce.sum() * (self.world / max(total, 1.0)))
            ce = ce.detach()
            for row, name in enumerate(names):
                sums[self.stream.datasets.index(name)] += torch.tensor([float(ce[row]), float(n[row])], dtype=torch.float64)
        norm = self.acc.clip_grad_norm_(self.model.parameters(), a.clip) if a.clip else torch.zeros(())
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.world > 1:
            sums = self.acc.reduce(sums, reduction="sum")
        self._dataset_sums += sums
        terms = {"loss": float(sums[:, 0].sum()) / max(total, 1.0), "grad_norm": float(norm)}
        if self.run.logs_now():
            for name, (ce_sum, n) in zip(self.stream.datasets, self._dataset_sums.tolist()):
                if n:
                    terms[f"loss_{name}"] = ce_sum / n
            self._dataset_sums.zero_()
        return terms

    @torch.no_grad()
    def evaluate(self, val: dict[str, list]) -> dict[str, float]:
        """Mean token loss per dataset of the held-out blocks (split over ranks by block)."""
        self.model.eval()
        out = {}
        for name, blocks in val.items():
            sums = torch.zeros(2)
            mine = blocks[self.rank::self.world]
            for i in range(0, len(mine), self.a.batch):
                chunk = mine[i:i + self.a.batch]
                ids = torch.from_numpy(np.stack([b[0] for b in chunk]).astype(np.int64))
                labels = torch.from_numpy(np.stack([b[1] for b in chunk]).astype(np.int64))
                with self.autocast():
                    ce, n = token_loss(self.model, ids.to(self.acc.device), labels.to(self.acc.device))
                sums += torch.tensor([float(ce.sum()), float(n.sum())])
            if self.world > 1:
                sums = self.acc.reduce(sums, reduction="sum")
            out[f"val_{name}"] = float(sums[0] / max(float(sums[1]), 1.0))
        self.model.train()
        return out

    def fit(self) -> None:
        a, run = self.a, self.run
        run.resume()
        evaluated = run.step  # the step whose weights were last validated (a resumed run's: already)
        val = validation_blocks(self.val_sources, a.val_blocks_per_dataset, self.vocab) if self.val_sources else {}
        if val and run.step == 0:
            run.log_eval(**self.evaluate(val))
        tokens = self.global_batch * self.stream.block_len
        positions = []
        for step in run.steps():
            terms = self.train_step(step)
            run.data_state = {"next_position": (step + 1) * self.global_batch}
            run.record(tokens=tokens, **terms)
            if a.record_ranks:
                positions += [g for m in range(a.accum)
                              for g in self.stream.positions(step, m, a.batch, a.accum, self.rank, self.world)]
            if val and (step + 1) % a.eval_every == 0:
                run.log_eval(step + 1, **self.evaluate(val))
                evaluated = step + 1
        if val and run.ended and run.step != evaluated:
            run.log_eval(**self.evaluate(val))
        if a.record_ranks:
            self.record_rank(positions)

    def record_rank(self, positions: list[int]) -> None:
        """Test instrument: this rank's block positions and a digest of its weights."""
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.acc.unwrap_model(self.model).state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().numpy().tobytes())
        from anygpt.files import write_json

        write_json(Path(self.a.out) / "ranks" / f"rank-{self.rank}.json",
                   {"rank": self.rank, "world": self.world, "positions": positions, "weights_sha256": h.hexdigest()})

    # ------------------------------------------------------------- export
    def export(self, folder: Path, *, plain_hf: bool = False) -> None:
        """The trained model (LoRA merged) as our model folder, or a plain HF folder."""
        if not self.acc.is_main_process:
            return
        from anygpt.lm.checkpoint import FolderConfig, save_lm

        if self._merged is None:
            model = self.acc.unwrap_model(self.model)
            self._merged = model.merge_and_unload() if self.a.lora else model
        tokenizers = {} if plain_hf else tokenizer_entries(self.a.tokenizers, self.specs)
        generation = {"image": {"do_sample": False, "cfg_scale": self.a.cfg_scale}} if self.a.cfg_scale else {}
        routes = {} if plain_hf else instruction_routes(self.a.instruction_prompts, self.specs)
        cfg = None if plain_hf else FolderConfig(self.specs, self.a.template, tokenizers, released=False,
                                                 generation=generation, instruction_prompts=routes)
        save_lm(folder, self._merged, self.tokenizer, cfg, dtype=EXPORT_DTYPES[self.a.export_dtype],
                flag="--export-hf" if plain_hf else "--export", inputs=export_inputs(self.a))
        print(f"exported {'HF' if plain_hf else 'anygpt'} model folder {folder}", flush=True)


def export_inputs(a: argparse.Namespace) -> dict:
    """What an export must stay apart from: the run's checkpoints, the blocks, --init."""
    inputs = {"the run's checkpoints (--out)": Path(a.out) / "checkpoints"}
    for flag, specs in (("--blocks", a.blocks), ("--val-blocks", a.val_blocks)):
        for spec in specs:
            folder = spec.rpartition(":")[0] if ":" in spec and Path(spec.rpartition(":")[0]).is_dir() else spec
            inputs[f"{flag} {folder}"] = folder
    if a.init and Path(a.init).exists():
        inputs["--init"] = a.init
    return inputs


def check_exports(a: argparse.Namespace) -> None:
    """Before training: each export folder is ours to replace, apart from the inputs and the
    other export (files.claim_output_dir), and its tokenizer loaders are known."""
    from anygpt.files import check_apart, claim_output_dir

    if a.export_only and not (a.export or a.export_hf):
        raise UsageError("--export-only needs --export DIR (or --export-hf DIR)")
    for flag, folder in (("--export", a.export), ("--export-hf", a.export_hf)):
        if folder:
            claim_output_dir(folder, "model", flag=flag, inputs=export_inputs(a))
    if a.export and a.export_hf:
        check_apart(a.export_hf, {"--export": a.export}, flag="--export-hf")
    if a.export or a.code_init:
        check_loaders(a.tokenizers)


def check_loaders(values: list[str]) -> None:
    """--tokenizers: every LOADER must be one a model folder can be loaded with."""
    import anygpt.modalities  # noqa: F401  (registers the modalities and their loaders)
    from anygpt.errors import UnknownModalityError
    from anygpt.modalities.registry import get_modality

    for v in values:
        modality, _, loader = v.partition("=")
        try:
            known = get_modality(modality).tokenizer_loaders
        except UnknownModalityError:
            continue  # tokenizer_entries names the modality the blocks lack
        if loader not in known:
            raise UsageError(f"--tokenizers {v}: no {modality} tokenizer loader {loader!r}; "
                             f"known: {', '.join(sorted(known))}")


def tokenizer_entries(values: list[str], specs) -> dict[str, dict]:
    """--tokenizers image=compact ... -> anygpt.json's {"image": {"loader": "compact"}, ...}."""
    entries = {}
    known = {s.name for s in specs}
    for v in values:
        modality, sep, loader = v.partition("=")
        if not sep or not loader:
            raise AnyGPTError(f"--tokenizers: {v!r} is not MODALITY=LOADER (e.g. image=compact)")
        if modality not in known:
            raise AnyGPTError(f"--tokenizers: the blocks have no {modality!r} codes (they have {', '.join(sorted(known))})")
        entries[modality] = {"loader": loader}
    return entries


def instruction_routes(values: list[str], specs) -> dict[str, list[str]]:
    """--instruction-prompts image=from_text,to_text ... -> anygpt.json's {"image": ["from_text", "to_text"]}."""
    from anygpt.lm.checkpoint import INSTRUCTION_DIRECTIONS

    routes = {}
    known = {s.name for s in specs}
    for v in values:
        modality, sep, directions = v.partition("=")
        if not sep or not directions or not set(directions.split(",")) <= set(INSTRUCTION_DIRECTIONS):
            raise AnyGPTError(f"--instruction-prompts: {v!r} is not MODALITY=DIRECTION[,DIRECTION] with directions "
                              f"{' and '.join(INSTRUCTION_DIRECTIONS)} (e.g. image=from_text,to_text)")
        if modality not in known:
            raise AnyGPTError(f"--instruction-prompts: the blocks have no {modality!r} codes "
                              f"(they have {', '.join(sorted(known))})")
        routes[modality] = directions.split(",")
    return routes


def build_parser() -> argparse.ArgumentParser:
    from anygpt import cli_flags

    p = cli_flags.Parser(prog="anygpt train lm", description=__doc__)
    p.add_argument("--blocks", action="append", required=True, metavar="DIR[:WEIGHT]",
                   help="block folder written by `anygpt blocks`, repeatable; mixed by WEIGHT (default 1)")
    p.add_argument("--val-blocks", action="append", default=[], metavar="DIR",
                   help="held-out block folder (same vocabulary): validation loss per dataset")
    p.add_argument("--stage", choices=sorted(STAGES), default="pretrain",
                   help="pretrain (loss on every token) or chat (labels masked to assistant turns by the blocks); "
                        "sets the default learning rate")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--preset", default="tiny", help=f"size preset trained from scratch: {', '.join(MODEL_SIZES)} (default: tiny)")
    m.add_argument("--init", help="start from a model: our folder, a released AnyGPT folder, a HF causal-LM folder, "
                                  "a .gguf file, or a named base (smollm2-135m-instruct)")
    p.add_argument("--new-rows", choices=["mean", "random"], default="mean",
                   help="--init whose vocabulary grows: new embedding and head rows start as the mean of the "
                        "old ones (default; initial code loss near uniform) or random N(0, 0.02) as the paper")
    p.add_argument("--code-init", action="store_true",
                   help="start the media codes' embedding and head rows from the --tokenizers' code vectors "
                        "(anygpt.lm.code_init: alike codes start alike) instead of random or mean rows")
    p.add_argument("--lora", type=cli_flags.count_or_zero, default=0, metavar="RANK", help="train LoRA adapters of this rank (0: full fine-tuning)")
    p.add_argument("--lora-alpha", type=cli_flags.positive_float, default=None, help="LoRA alpha (default: 2 x rank)")
    p.add_argument("--batch", type=cli_flags.positive_int, default=1, help="blocks per micro-batch per process (default: 1)")
    p.add_argument("--accum", type=cli_flags.positive_int, default=1, help="micro-batches per step (gradient accumulation; default: 1)")
    p.add_argument("--lr", type=cli_flags.positive_float, default=None, help="peak learning rate (default: 1e-3 pretrain, 3e-4 chat)")
    p.add_argument("--warmup", type=cli_flags.non_negative_float, default=None, help="warmup steps, or a fraction of --steps if < 1 (default: 0.03)")
    p.add_argument("--min-lr-ratio", type=cli_flags.fraction, default=0.1, help="cosine floor as a fraction of --lr (default: 0.1)")
    p.add_argument("--weight-decay", type=cli_flags.non_negative_float, default=0.1,
                   help="AdamW weight decay of the matrices (default: 0.1)")
    p.add_argument("--clip", type=cli_flags.non_negative_float, default=1.0, help="gradient-norm clip (0: none)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="bf16 autocast or fp32 (default: bf16)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--grad-checkpointing", action="store_true", help="activation checkpointing (less memory, ~30%% slower)")
    p.add_argument("--fused-adam", action="store_true", help="fused AdamW kernel")
    p.add_argument("--eval-every", type=cli_flags.positive_int, default=200, help="validation every N steps (default: 200)")
    p.add_argument("--val-blocks-per-dataset", type=cli_flags.positive_int, default=8, help="held-out blocks per dataset (default: 8)")
    p.add_argument("--export-hf", default=None, metavar="DIR", help="also export a plain HF folder (vLLM, llama.cpp converters)")
    p.add_argument("--export-dtype", choices=["bf16", "fp16", "fp32"], default="bf16", help="weights of exports (default: bf16)")
    p.add_argument("--tokenizers", nargs="*", default=["image=compact", "speech=compact", "music=compact"], metavar="MODALITY=LOADER",
                   help="modality tokenizers named in the exported anygpt.json and read by --code-init "
                        "(default: the shipped tiny ones)")
    p.add_argument("--template", choices=["MMGPT", "AnyGPT"], default="MMGPT", help="chat template recorded in the export")
    p.add_argument("--cfg-scale", type=cli_flags.positive_float, default=None, metavar="X",
                   help="record in the export that the model draws images greedily with classifier-free guidance "
                        "at this scale (for blocks built with cfg_drop; `anygpt chat` and eval then use it; "
                        "default: none)")
    p.add_argument("--instruction-prompts", nargs="*", default=[], metavar="MODALITY=DIRECTIONS",
                   help="record in the export which single requests are written as the modality's pretraining "
                        "instruction, not the chat template: from_text (a text request for that modality), "
                        "to_text (text with one attachment of it, for a text reply); e.g. "
                        "image=from_text,to_text speech=to_text (default: none)")
    p.add_argument("--record-ranks", action="store_true", help=argparse.SUPPRESS)
    add_run_args(p, out="runs/lm", steps=2000, save_every=100, log_every=10,
                 export_help="after training, export our model folder (safetensors + anygpt.json) here")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    lr, warmup = STAGES[a.stage]
    a.lr = a.lr if a.lr is not None else lr
    a.warmup = a.warmup if a.warmup is not None else warmup
    check_exports(a)
    trainer = LMTrainer(a)
    if not a.export_only:
        trainer.fit()
    elif trainer.run.resume() is None:
        raise CheckpointError(f"{a.out}: no checkpoint to export")
    if a.export:
        trainer.export(Path(a.export))
    if a.export_hf:
        trainer.export(Path(a.export_hf), plain_hf=True)
    return 0


if __name__ == "__main__":  # `accelerate launch -m anygpt.train.lm ...`: the dispatcher's error convention
    from anygpt.errors import run

    sys.exit(run("anygpt train lm", main, [a for a in sys.argv[1:] if a != "--debug"], debug="--debug" in sys.argv))
