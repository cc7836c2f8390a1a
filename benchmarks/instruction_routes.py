"""How a model answers a chat request: through the chat template, or through the pretraining
instruction of that ability (anygpt.json's "instruction_prompts"), with the same words.

    python benchmarks/instruction_routes.py                               # anygpt-tiny, 100 scenes, 40 clips
    python benchmarks/instruction_routes.py --model runs/small/model --scenes 200 --clips 100 --cfg 1,1.5,2,3
    python benchmarks/instruction_routes.py --smoke                       # 2 items each, seconds (the suite)

Every request goes through `AnyGPT.generate` as `anygpt chat` sends it, greedily, twice: with the
model's instruction_prompts emptied (the chat template) and with them (the instruction):
  - drawing: "Draw " + a scene's caption (anygpt.eval.scene_abilities.scene_items: one to four
    objects of the training distribution, from their own seed), the reply an image; a third
    route gives the bare caption to the instruction (what `anygpt eval report` scores). The
    pixel scene checker reads each drawing back: exact scenes, and the share of objects with
    colour, shape and position right. `--cfg`: classifier-free guidance scales (1: none).
  - captioning: "Describe this image." with the scene's image codes attached, a text reply,
    scored as `anygpt eval report` scores captions (objects named right, exact captions).
  - transcribing: "Transcribe this speech." with a test-split sentence spoken by flite attached
    (anygpt.eval.speech_abilities.spoken_items), a text reply; word error rate.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

DRAW_COLUMNS = ("exact", "object_accuracy", "color", "shape", "positions")


def build_parser() -> argparse.ArgumentParser:
    from anygpt import cli_flags

    p = argparse.ArgumentParser(prog="instruction_routes.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="anygpt-tiny",
                   help="model name or folder with image and speech tokenizers (default: anygpt-tiny)")
    p.add_argument("--scenes", type=cli_flags.positive_int, default=100, help="scenes drawn and captioned (default: 100)")
    p.add_argument("--clips", type=cli_flags.positive_int, default=40, help="sentences transcribed (default: 40)")
    p.add_argument("--seed", type=int, default=7, help="seed of the scenes and sentences (default: 7)")
    p.add_argument("--cfg", default="1,1.5,2", help="comma list of guidance scales for drawing (default: 1,1.5,2)")
    p.add_argument("--threads", type=cli_flags.positive_int, default=1, help="torch threads (default: 1)")
    p.add_argument("--smoke", action="store_true", help="2 items each, guidance 1 and 2: seconds (the suite's run)")
    return p


def ask(model, parts: list, reply: str, routed: bool, settings) -> list:
    """One user turn of `parts` -> the reply's parts, with or without the model's instruction routes."""
    from anygpt.conversation import Conversation, Turn

    routes, model.instruction_prompts = model.instruction_prompts, (model.instruction_prompts if routed else {})
    try:
        conv = Conversation()
        conv.turns.append(Turn("user", parts))
        return model.generate(conv, settings=settings, force_modality=reply, seed=0).parts
    finally:
        model.instruction_prompts = routes


def drawing_rows(model, items, scales: list[float]) -> list[tuple]:
    from anygpt.eval.scene_abilities import IMAGE_KEYS, _means, draw_codes
    from anygpt.eval.scene_checker import check_scene
    from anygpt.parts import CodesPart, TextPart

    tok = model.tokenizers["image"]
    rows = []
    for cfg in scales:
        settings = model.preset("image").with_(do_sample=False, cfg_scale=cfg)
        routes = {
            "chat template": lambda it: ask(model, [TextPart(request(it))], "image", False, settings),
            "instruction": lambda it: ask(model, [TextPart(request(it))], "image", True, settings),
            "instruction, bare caption": lambda it: [CodesPart("image", draw_codes(model, it.caption, cfg))],
        }
        for route, draw in routes.items():
            scores = []
            for it in items:
                codes = next(p.codes for p in draw(it) if isinstance(p, CodesPart))
                scores.append(check_scene(tok.decode(codes.unsqueeze(0))[0], it.attributes))
            s = _means(scores, IMAGE_KEYS)
            rows.append(("drawing", f"{cfg:g}", route, ", ".join(f"{c} {s[c]:.3f}" for c in DRAW_COLUMNS)))
    return rows


def request(item) -> str:
    return "Draw " + item.caption[0].lower() + item.caption[1:]


def caption_rows(model, items) -> list[tuple]:
    from anygpt.data.fresh_pairs import encode_scenes
    from anygpt.eval.scene_abilities import _means
    from anygpt.eval.scene_captions import scene_caption_accuracy
    from anygpt.lm.generation import GenerationSettings
    from anygpt.parts import CodesPart, TextPart

    codes = encode_scenes(model.tokenizers["image"], [it.spec for it in items])
    settings = GenerationSettings(max_new_tokens=80, do_sample=False)
    rows = []
    for routed in (False, True):
        scores = []
        for it, c in zip(items, codes):
            parts = ask(model, [TextPart("Describe this image."), CodesPart("image", c)], "text", routed, settings)
            text = "".join(p.text for p in parts if isinstance(p, TextPart)).strip()
            scores.append(scene_caption_accuracy(text, it.attributes))
        s = _means(scores, ("object_accuracy", "exact"))
        rows.append(("captioning", "-", "instruction" if routed else "chat template",
                     f"objects right {s['object_accuracy']:.3f}, exact {s['exact']:.3f}"))
    return rows


def transcribing_rows(model, n: int, seed: int) -> list[tuple]:
    from anygpt.eval.asr import error_rates
    from anygpt.eval.speech_abilities import spoken_items
    from anygpt.lm.generation import GenerationSettings
    from anygpt.parts import CodesPart, TextPart

    items = spoken_items(model.tokenizers["speech"], n, seed=seed)
    settings = GenerationSettings(max_new_tokens=60, do_sample=False)
    rows = []
    for routed in (False, True):
        hyps = []
        for it in items:
            parts = ask(model, [TextPart("Transcribe this speech."), CodesPart("speech", it.codes)], "text", routed,
                        settings)
            hyps.append("".join(p.text for p in parts if isinstance(p, TextPart)).strip())
        wer = error_rates([it.text for it in items], hyps)["wer"]
        rows.append(("transcribing", "-", "instruction" if routed else "chat template", f"WER {wer:.3f}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from anygpt.eval.scene_abilities import scene_items
    from anygpt.loaders import load_model

    torch.set_num_threads(a.threads)
    scales = [1.0, 2.0] if a.smoke else [float(x) for x in a.cfg.split(",")]
    n_scenes, n_clips = (2, 2) if a.smoke else (a.scenes, a.clips)
    model = load_model(a.model)
    items = scene_items(n_scenes, seed=a.seed)
    t0 = time.perf_counter()
    rows = drawing_rows(model, items, scales) + caption_rows(model, items) + transcribing_rows(model, n_clips, a.seed)
    print(f"{a.model}: {n_scenes} scenes and {n_clips} spoken sentences (seed {a.seed}), greedy\n")
    print("| ability | guidance | route | scores |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
