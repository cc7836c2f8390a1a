"""Evaluation tasks: each scores one ability of a system (or one tokenizer) on a list of items.

A task is `run_<task>(items, system, ctx) -> report` where report is a dict:
{"task", "system", "source", "n", "summary": {metric: value}, "groups": {name: [rows]},
"items": [per-item results], "config": {...}}. Items come from anygpt.eval.benchmarks.
Generated media go under ctx.workdir.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from anygpt.eval.benchmarks import BenchmarkError, EvalItem
from anygpt.eval.systems import materialise_audio, materialise_image, require_method
from anygpt.files import safe_join


@dataclass
class TaskContext:
    """Options shared by tasks. workdir: where generated media are written."""

    workdir: Path
    source: str = "corpus"
    system_name: str = "reference"
    prompt_seconds: float = 3.0  # voice-clone prompt length (the paper: 3 s)
    meteor: bool = True
    modality: str | None = None  # reconstruction: speech | music | image
    sample_rate: int | None = None
    image_size: tuple[int, int] | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def media_path(self, folder: str, item_id: str, ext: str) -> Path:
        """workdir/folder/ITEM_ID.ext for a generated file; an item id that would lead out of
        the work folder ('../x', '/abs') raises UnsafePathError naming it."""
        return safe_join(self.workdir / folder, f"{item_id}{ext}", what="item id")


def _mean(xs) -> float | None:
    """Mean of the finite values; inf when every value is +inf (lossless PSNR); None if none."""
    xs = [float(x) for x in xs if x is not None]
    finite = [x for x in xs if np.isfinite(x)]
    if finite:
        return float(np.mean(finite))
    return float("inf") if xs and all(x == float("inf") for x in xs) else None


def _frac(xs) -> float | None:
    xs = [bool(x) for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _need(items: list[EvalItem], what: str, ok: Callable[[EvalItem], bool], task: str) -> list[EvalItem]:
    bad = [i.id for i in items if not ok(i)]
    if bad:
        raise BenchmarkError(f"task {task!r} needs {what} for every item; {len(bad)} lack it, e.g. {bad[:3]}")
    return items


def _report(task: str, ctx: TaskContext, items: list[dict], summary: dict, groups: dict | None = None,
            started: float | None = None) -> dict:
    return {"task": task, "system": ctx.system_name, "source": ctx.source, "n": len(items), "summary": summary,
            "groups": groups or {}, "items": items,
            "config": {"prompt_seconds": ctx.prompt_seconds, "modality": ctx.modality, "workdir": str(ctx.workdir)},
            "seconds": round(time.time() - started, 2) if started else None}


def _bar(items, ctx: TaskContext, desc: str):
    return tqdm(items, desc=desc, disable=not ctx.progress, leave=False)


def _wer_groups(rows: list[dict], key: str = "speaker") -> list[dict]:
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[str(r.get(key))].append(r)
    out = []
    for k, rs in sorted(by.items()):
        words = sum(r["ref_words"] for r in rs)
        chars = sum(r["ref_chars"] for r in rs)
        row = {key: k, "n": len(rs), "wer": sum(r["word_errors"] for r in rs) / max(words, 1),
               "cer": sum(r["char_errors"] for r in rs) / max(chars, 1)}
        if any("similarity" in r for r in rs):
            row["similarity"] = _mean(r.get("similarity") for r in rs)
        out.append(row)
    return out


def _wer_summary(rows: list[dict]) -> dict:
    words = sum(r["ref_words"] for r in rows)
    chars = sum(r["ref_chars"] for r in rows)
    return {"wer": sum(r["word_errors"] for r in rows) / max(words, 1),
            "cer": sum(r["char_errors"] for r in rows) / max(chars, 1),
            "clip_wer_mean": _mean(r["wer"] for r in rows)}


# ---------------------------------------------------------------- speech

def run_asr(items: list[EvalItem], system: Any, ctx: TaskContext) -> dict:
    """Speech -> text. WER/CER (normalised, corpus-level) overall and per speaker."""
    from anygpt.eval.asr import clip_errors

    t0 = time.time()
    require_method(system, "transcribe", "asr")
    _need(items, "audio and a transcript", lambda i: i.path is not None and i.text is not None, "asr")
    rows = []
    for it in _bar(items, ctx, "asr"):
        hyp = system.transcribe(Path(it.path))
        rows.append({"id": it.id, "speaker": it.speaker, **clip_errors(it.text, hyp).to_dict()})
    return _report("asr", ctx, rows, _wer_summary(rows), {"speaker": _wer_groups(rows)}, t0)


def _crop_prompt(path: Path, seconds: float, out: Path) -> Path:
    from anygpt.media_io import load_audio, save_audio

    if seconds <= 0:
        return path
    wav = load_audio(path, 16000)
    return save_audio(wav[:, : int(seconds * 16000)], out, 16000)


def _pick_prompts(items: list[EvalItem], pool: list[EvalItem]) -> dict[str, EvalItem]:
    """For each item, another clip by the same speaker (the next one in id order, cyclically)."""
    by: dict[str, list[EvalItem]] = defaultdict(list)
    for p in pool:
        by[str(p.speaker)].append(p)
    for v in by.values():
        v.sort(key=lambda i: i.id)
    out = {}
    for it in items:
        same = [p for p in by.get(str(it.speaker), []) if p.id != it.id and p.path is not None]
        if same:
            later = [p for p in same if p.id > it.id]
            out[it.id] = (later or same)[0]
    return out


def run_tts(items: list[EvalItem], system: Any, ctx: TaskContext) -> dict:
    """Text -> speech with the system's own voice. Whisper WER/CER of the output."""
    return _speech_generation("tts", items, system, ctx, with_prompt=False)


def run_voice_clone(items: list[EvalItem], system: Any, ctx: TaskContext) -> dict:
    """Text + a voice prompt (another clip of the item's speaker, cut to prompt_seconds) -> speech.

    Scores: Whisper WER/CER vs the text; resemblyzer similarity of the output to the prompt
    and, as the ceiling, of the item's real recording to the same prompt.
    """
    return _speech_generation("voice-clone", items, system, ctx, with_prompt=True)


def _speech_generation(task: str, items: list[EvalItem], system: Any, ctx: TaskContext, with_prompt: bool) -> dict:
    from anygpt.eval.asr import clip_errors, transcribe
    from anygpt.eval.speaker import cosine, embed_speaker

    t0 = time.time()
    require_method(system, "speak", task)
    _need(items, "a text", lambda i: i.text is not None, task)
    prompts = _pick_prompts(items, ctx.extra.get("pool") or items) if with_prompt else {}
    if with_prompt and not prompts:
        raise BenchmarkError(f"task {task!r}: no speaker has two clips, so no voice prompt can be chosen")
    rows = []
    emb_cache: dict[str, np.ndarray] = {}

    def emb(p: Path) -> np.ndarray:
        k = str(p)
        if k not in emb_cache:
            emb_cache[k] = embed_speaker(p)
        return emb_cache[k]

    for it in _bar(items, ctx, task):
        prompt = None
        if with_prompt:
            if it.id not in prompts:
                continue
            src = prompts[it.id]
            prompt = _crop_prompt(Path(src.path), ctx.prompt_seconds, ctx.media_path("prompts", it.id, ".wav"))
            if hasattr(system, "prompt_speakers"):
                system.prompt_speakers[str(prompt)] = src.speaker
        out = ctx.media_path(task, it.id, ".wav")
        wav = materialise_audio(system.speak(it.text, prompt, out), out)
        row = {"id": it.id, "speaker": it.speaker, "output": str(wav), **clip_errors(it.text, transcribe(wav)).to_dict()}
        if prompt is not None:
            row["prompt"] = str(prompt)
            row["similarity"] = cosine(emb(wav), emb(prompt))
            if it.path is not None:
                row["similarity_ground_truth"] = cosine(emb(Path(it.path)), emb(prompt))
        rows.append(row)
    summary = _wer_summary(rows)
    if with_prompt:
        summary["speaker_similarity"] = _mean(r.get("similarity") for r in rows)
        summary["speaker_similarity_ground_truth"] = _mean(r.get("similarity_ground_truth") for r in rows)
    return _report(task, ctx, rows, summary, {"speaker": _wer_groups(rows)}, t0)


# ---------------------------------------------------------------- captions

def _caption_scores(rows: list[dict], items: list[EvalItem], ctx: TaskContext) -> dict:
    from anygpt.eval.captions import coco_caption_scores

    refs = {it.id: it.captions or [it.text or ""] for it in items}
    hyps = {r["id"]: r["hypothesis"] for r in rows}
    return coco_caption_scores(refs, hyps, meteor=ctx.meteor)


def _scene_items(items: list[EvalItem]) -> bool:
    return all(isinstance(i.attributes.get("objects"), list) and "background" in i.attributes for i in items)


def run_caption(items: list[EvalItem], system: Any, ctx: TaskContext) -> dict:
    """Image -> text. BLEU-4, METEOR, ROUGE-L, CIDEr; for scene items also exact attribute accuracy."""
    from anygpt.eval.scene_captions import named_attributes, scene_caption_accuracy

    t0 = time.time()
    require_method(system, "caption", "caption")
    _need(items, "an image and reference captions", lambda i: i.path is not None and (i.captions or i.text), "caption")
    rows = [{"id": it.id, "hypothesis": system.caption(Path(it.path))} for it in _bar(items, ctx, "caption")]
    summary = _caption_scores(rows, items, ctx)
    if _scene_items(items):
        for r, it in zip(rows, items):
            r["attributes"] = {**scene_caption_accuracy(r["hypothesis"], it.attributes),
                               **named_attributes(r["hypothesis"], it.attributes)}
        for k in ("background", "count", "counts", "sizes", "positions", "exact"):
            summary[f"attr_{k}"] = _frac(r["attributes"][k] for r in rows)
        for k in ("object_accuracy", "color_named", "shape_named", "kind_named"):
            summary[k] = _mean(r["attributes"][k] for r in rows)
    return _report("caption", ctx, rows, summary, None, t0)


def run_text_to_image(items: list[EvalItem], system: Any, ctx: TaskContext) -> dict:
    """Caption -> image. Scene items: the scene checker reads the drawing back and compares it
    with the caption's attributes. Other items (COCO): CLIP score if ctx.extra["clip_model"]
    names a local CLIP folder, else only the images are written."""
    from anygpt.eval.scene_checker import check_scene

    t0 = time.time()
    require_method(system, "draw", "text-to-image")
    _need(items, "a caption", lambda i: bool(i.captions or i.text), "text-to-image")
    scenes = _scene_items(items)
    rows = []
    for it in _bar(items, ctx, "text-to-image"):
        cap = it.captions[0] if it.captions else it.text
        img = materialise_image(system.draw(cap, ctx.media_path("images", it.id, ".png")),
                                ctx.media_path("images", it.id, ".png"))
        row = {"id": it.id, "caption": cap, "output": str(img)}
        if scenes:
            res = check_scene(img, it.attributes)
            row["scene"] = {k: v for k, v in res.items() if k != "read"}
            row["read"] = res["read"]
        rows.append(row)
    summary: dict[str, Any] = {}
    if scenes:
        for k in ("exact", "background", "count", "counts", "positions", "color", "shape", "size"):
            summary[f"scene_{k}"] = _frac(r["scene"][k] for r in rows)
        summary["object_accuracy"] = _mean(r["scene"]["object_accuracy"] for r in rows)
    if ctx.extra.get("clip_model"):
        from anygpt.eval.embed_scores import clip_scores

        s = clip_scores(ctx.extra["clip_model"], [r["output"] for r in rows], [r["caption"] for r in rows])
        for r, v in zip(rows, s):
            r["clip_score"] = v
        summary["clip_score"] = _mean(s)
    if not summary:
        summary["note"] = "no scorer for these items: pass --clip-model DIR (a local CLIP) for a CLIP score"
    return _report("text-to-image", ctx, rows, summary, None, t0)


# ---------------------------------------------------------------- music

def _music_vocabulary(items: list[EvalItem]) -> dict[str, list[str]]:
    """Attribute name -> the string values the items' metadata use (what a caption should name)."""
    vocab: dict[str, set[str]] = defaultdict(set)
    for it in items:
        for k, v in it.attributes.items():
            if isinstance(v, str) and 0 < len(v) <= 40 and k not in ("aspects", "title", "source", "composer", "collection"):
                vocab[k].add(v)
    return {k: sorted(v) for k, v in vocab.items() if len(v) >= 1}


def run_music_caption(items: list[EvalItem], system: Any, ctx: TaskContext) -> dict:
    """Music -> text. COCO caption metrics, MiniLM text similarity, exact attribute accuracy
    (the metadata values a caption names), and a CLAP score with ctx.extra["clap_model"]."""
    from anygpt.eval.captions import attribute_accuracy, text_similarity

    t0 = time.time()
    require_method(system, "describe_music", "music-caption")
    _need(items, "audio and a caption", lambda i: i.path is not None and bool(i.captions or i.text), "music-caption")
    rows = [{"id": it.id, "hypothesis": system.describe_music(Path(it.path))} for it in _bar(items, ctx, "music-caption")]
    summary = _caption_scores(rows, items, ctx)
    sims = text_similarity([r["hypothesis"] for r in rows], [(it.captions or [it.text])[0] for it in items])
    for r, s in zip(rows, sims):
        r["text_similarity"] = s
    summary["text_similarity"] = _mean(sims)
    vocab = _music_vocabulary(items)
    if vocab:
        acc = attribute_accuracy([r["hypothesis"] for r in rows], [it.attributes for it in items], vocab)
        for k, v in acc["per_attribute"].items():
            summary[f"attr_{k}"] = v
        summary["attr_all"] = acc["all_correct"]
    if ctx.extra.get("clap_model"):
        from anygpt.eval.embed_scores import clap_scores

        summary["clap_score"] = _mean(clap_scores(ctx.extra["clap_model"], [str(it.path) for it in items],
                                                  [r["hypothesis"] for r in rows]))
    return _report("music-caption", ctx, rows, summary, None, t0)


def run_text_to_music(items: list[EvalItem], system: Any, ctx: TaskContext) -> dict:
    """Caption -> music. Tempo, key/mode and register read from the output and compared with
    the item's metadata; CLAP score with ctx.extra["clap_model"]."""
    from anygpt.eval.music_attributes import compare_music, music_attributes

    t0 = time.time()
    require_method(system, "compose", "text-to-music")
    _need(items, "a caption", lambda i: bool(i.captions or i.text), "text-to-music")
    rows = []
    for it in _bar(items, ctx, "text-to-music"):
        cap = it.captions[0] if it.captions else it.text
        wav = materialise_audio(system.compose(cap, ctx.media_path("music", it.id, ".wav")),
                                ctx.media_path("music", it.id, ".wav"))
        est = music_attributes(wav)
        rows.append({"id": it.id, "caption": cap, "output": str(wav), "estimated": est,
                     "match": compare_music(est, it.attributes)})
    keys = sorted({k for r in rows for k in r["match"]})
    summary: dict[str, Any] = {f"{k}_accuracy": _frac(r["match"].get(k) for r in rows) for k in keys}
    if ctx.extra.get("clap_model"):
        from anygpt.eval.embed_scores import clap_scores

        summary["clap_score"] = _mean(clap_scores(ctx.extra["clap_model"], [r["output"] for r in rows],
                                                  [r["caption"] for r in rows]))
    if not summary:
        summary["note"] = "items carry no tempo/key/register metadata; pass --clap-model DIR for a CLAP score"
    return _report("text-to-music", ctx, rows, summary, None, t0)


# ---------------------------------------------------------------- reconstruction

def run_reconstruction(items: list[EvalItem], tokenizer: Any, ctx: TaskContext) -> dict:
    """media -> tokenizer.encode -> decode -> media, per item; metrics by modality:
    speech: log-mel distance, SI-SNR, Whisper WER of the reconstruction, speaker similarity;
    music: log-mel distance, SI-SNR, note F1 (basic-pitch); image: PSNR, SSIM and, for
    scenes, the scene checker on the reconstruction."""
    import torch

    from anygpt.eval.audio_metrics import log_mel_distance, si_snr

    t0 = time.time()
    modality = ctx.modality
    if modality not in ("speech", "music", "image"):
        raise BenchmarkError(f"reconstruction needs --modality speech, music or image (got {modality!r})")
    _need(items, "a media file", lambda i: i.path is not None, "reconstruction")
    rows = []
    for it in _bar(items, ctx, f"reconstruction/{modality}"):
        media = tokenizer.load(it.path)
        with torch.inference_mode():
            codes = tokenizer.encode(media.unsqueeze(0))
            recon = tokenizer.decode(codes)[0]
        row: dict[str, Any] = {"id": it.id, "codes_shape": list(codes.shape)}
        if modality == "image":
            row.update(_image_recon(media, recon, it, ctx))
        else:
            sr = int(tokenizer.sample_rate)
            ref, est = media[0].numpy(), recon.reshape(-1).float().numpy()
            row["log_mel_distance"] = log_mel_distance(ref, est, sr)
            row["si_snr"] = si_snr(ref, est)
            row["codes_per_second"] = codes.shape[-1] / (len(ref) / sr)
            from anygpt.media_io import save_audio

            out = save_audio(torch.from_numpy(est).reshape(1, -1), ctx.media_path("recon", it.id, ".wav"), sr)
            row.update(_speech_recon(it, out) if modality == "speech" else _music_recon(Path(it.path), out))
        rows.append(row)
    summary: dict[str, Any] = {}
    for k in ("log_mel_distance", "si_snr", "psnr", "ssim", "note_f1", "speaker_similarity", "codes_per_second"):
        if any(k in r for r in rows):
            summary[k] = _mean(r.get(k) for r in rows)
    if any("ref_words" in r for r in rows):
        summary.update(_wer_summary([r for r in rows if "ref_words" in r]))
    if any("scene_exact" in r for r in rows):
        summary["scene_exact"] = _frac(r.get("scene_exact") for r in rows)
    return _report("reconstruction", ctx, rows, summary, None, t0)


def _image_recon(media, recon, it: EvalItem, ctx: TaskContext) -> dict:
    from anygpt.eval.image_metrics import psnr, ssim
    from anygpt.media_io import save_image

    recon = recon.float().clamp(0, 1)
    if recon.shape != media.shape:
        import torch.nn.functional as F

        recon = F.interpolate(recon[None], size=media.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0, 1)
    out = {"psnr": psnr(media, recon), "ssim": ssim(media, recon)}
    save_image(recon, ctx.media_path("recon", it.id, ".png"))
    if isinstance(it.attributes.get("objects"), list):
        from anygpt.eval.scene_checker import check_scene

        out["scene_exact"] = check_scene(recon, it.attributes)["exact"]
    return out


def _speech_recon(it: EvalItem, out: Path) -> dict:
    from anygpt.eval.asr import clip_errors, transcribe
    from anygpt.eval.speaker import speaker_similarity

    row = {"speaker_similarity": speaker_similarity(Path(it.path), out)}
    if it.text is not None:
        row.update(clip_errors(it.text, transcribe(out)).to_dict())
    return row


def _music_recon(ref: Path, out: Path) -> dict:
    from anygpt.eval.music_notes import audio_note_f1

    r = audio_note_f1(ref, out)
    return {"note_f1": r["f1"], "note_precision": r["precision"], "note_recall": r["recall"]}


TASKS: dict[str, Callable[..., dict]] = {
    "asr": run_asr, "tts": run_tts, "voice-clone": run_voice_clone, "caption": run_caption,
    "text-to-image": run_text_to_image, "music-caption": run_music_caption,
    "text-to-music": run_text_to_music, "reconstruction": run_reconstruction,
}
