"""How a model draws a chat request: through the chat template, or through its text-to-image
instruction (anygpt.json's "instruction_replies"), at several guidance scales.

    python benchmarks/drawing_routes.py                                  # anygpt-tiny, 100 scenes
    python benchmarks/drawing_routes.py --model runs/small/model --scenes 200 --cfg 1,1.5,2,3
    python benchmarks/drawing_routes.py --smoke                          # 2 scenes, seconds (the suite)

Each scene (anygpt.eval.scene_abilities.scene_items: one to four objects of the training
distribution, from their own seed) is asked for three ways, greedily:
  - chat template: a conversation whose user turn is "Draw " + the scene's caption, the reply
    forced to start an image (what `anygpt chat` did before instruction replies);
  - instruction, request: the same request as the text of the first text-to-image instruction
    (what `anygpt chat` does for a model whose anygpt.json lists image in instruction_replies);
  - instruction, caption: the bare caption there (what `anygpt eval report` scores).
The pixel scene checker (anygpt.eval.scene_checker) reads each drawing back: exact scenes, and
the share of objects with colour, shape and position right. Guidance (`--cfg`) mixes in the
unconditional prompt (anygpt.lm.guidance); 1 is none.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

ROUTES = ("chat template", "instruction, request", "instruction, caption")
COLUMNS = ("exact", "object_accuracy", "color", "shape", "positions")


def build_parser() -> argparse.ArgumentParser:
    from anygpt import cli_flags

    p = argparse.ArgumentParser(prog="drawing_routes.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="anygpt-tiny", help="model name or folder with an image tokenizer (default: anygpt-tiny)")
    p.add_argument("--scenes", type=cli_flags.positive_int, default=100, help="scenes asked for (default: 100)")
    p.add_argument("--seed", type=int, default=7, help="seed of the scenes (default: 7)")
    p.add_argument("--cfg", default="1,1.5,2", help="comma list of guidance scales (default: 1,1.5,2)")
    p.add_argument("--threads", type=cli_flags.positive_int, default=1, help="torch threads (default: 1)")
    p.add_argument("--smoke", action="store_true", help="2 scenes at scales 1 and 2: seconds (the suite's run)")
    return p


def draw(model, route: str, caption: str, cfg: float) -> torch.Tensor:
    """One scene asked for along `route` -> its image codes LongTensor [K, T]."""
    from anygpt.conversation import Conversation
    from anygpt.eval.scene_abilities import draw_codes
    from anygpt.parts import CodesPart

    request = "Draw " + caption[0].lower() + caption[1:]
    if route == "instruction, caption":
        return draw_codes(model, caption, cfg)
    if route == "instruction, request":
        return draw_codes(model, request, cfg)
    routed, model.instruction_replies = model.instruction_replies, []
    try:
        conv = Conversation()
        conv.add_user(request)
        reply = model.generate(conv, settings=model.preset("image").with_(do_sample=False, cfg_scale=cfg),
                               force_modality="image", seed=0)
    finally:
        model.instruction_replies = routed
    return next(p.codes for p in reply.parts if isinstance(p, CodesPart))


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from anygpt.eval.scene_abilities import IMAGE_KEYS, _means, scene_items
    from anygpt.eval.scene_checker import check_scene
    from anygpt.loaders import load_model

    torch.set_num_threads(a.threads)
    scales = [1.0, 2.0] if a.smoke else [float(x) for x in a.cfg.split(",")]
    items = scene_items(2 if a.smoke else a.scenes, seed=a.seed)
    model = load_model(a.model)
    tok = model.tokenizers["image"]
    t0 = time.perf_counter()
    print(f"{a.model}: {len(items)} scenes (seed {a.seed}), greedy; share right, read back by the scene checker\n")
    print("| guidance | route | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for cfg in scales:
        for route in ROUTES:
            rows = [check_scene(tok.decode(draw(model, route, it.caption, cfg).unsqueeze(0))[0], it.attributes)
                    for it in items]
            s = _means(rows, IMAGE_KEYS)
            print(f"| {cfg:g} | {route} | " + " | ".join(f"{s[c]:.3f}" for c in COLUMNS) + " |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
