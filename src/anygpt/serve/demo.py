"""`anygpt demo`: a web demo of a model (Gradio), offline: no analytics, no share link, no
fonts or scripts from elsewhere (tests/serve/test_demo_browser.py checks the page loads
nothing but its own server).

It talks to the same ChatService as `anygpt serve` (scheduler, media cache, validation), in the
same process, by building OpenAI-format requests: a message with text, an image, speech (from
the microphone or a file) and music; replies show their text and images and play their speech
and music; an uploaded voice prompt (~3 s of speech) sets the voice of spoken replies."""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXAMPLE = """examples:
  anygpt demo --model anygpt-tiny                     # http://127.0.0.1:7860
  anygpt demo --model random-64x2-media --port 7861   # random weights: every modality comes out as media

Open the address in a browser on this machine. Nothing is fetched from elsewhere and no public
share link is made; --host 0.0.0.0 would make it reachable from other machines.
"""

# the compact image tokenizer writes 64x64 pictures: show them larger, without blurring
CSS = "#chat img { min-width: 192px; image-rendering: pixelated; }"
AUDIO_SUFFIXES = {".wav": "wav", ".flac": "flac", ".ogg": "ogg", ".mp3": "mp3"}
IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp", ".bmp": "image/bmp"}


def _b64_file(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _audio_part(path: str, kind: str) -> dict[str, Any]:
    fmt = AUDIO_SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{Path(path).name}: use a WAV, FLAC, OGG or MP3 file for {kind}")
    return {"type": "input_audio", "input_audio": {"data": _b64_file(path), "format": fmt, "kind": kind}}


def user_message(text: str, image: str | None, speech: str | None, music: str | None) -> dict[str, Any]:
    """The demo's inputs (Gradio's upload paths) -> an OpenAI user message."""
    parts: list[dict[str, Any]] = []
    if image:
        mime = IMAGE_MIME.get(Path(image).suffix.lower())
        if mime is None:
            raise ValueError(f"{Path(image).name}: use a PNG, JPEG, GIF, WebP or BMP image")
        parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{_b64_file(image)}"}})
    if speech:
        parts.append(_audio_part(speech, "speech"))
    if music:
        parts.append(_audio_part(music, "music"))
    if text and text.strip():
        parts.append({"type": "text", "text": text.strip()})
    if not parts:
        raise ValueError("write a message or attach an image, speech or music")
    return {"role": "user", "content": parts}


def _shown_user(text: str, image: str | None, speech: str | None, music: str | None) -> list[dict]:
    shown = [{"role": "user", "content": {"path": p}} for p in (image, speech, music) if p]
    if text and text.strip():
        shown.append({"role": "user", "content": text.strip()})
    return shown


def _shown_reply(message: dict[str, Any], out_dir: Path) -> list[dict]:
    """The reply message -> chat entries: its text, and its media written to files Gradio serves."""
    shown: list[dict] = []
    items = message["content"] if isinstance(message["content"], list) else [
        {"type": "text", "text": message["content"]}]
    for item in items:
        if item["type"] == "text" and item["text"].strip():
            shown.append({"role": "assistant", "content": item["text"]})
        elif item["type"] == "image_url":
            data = item["image_url"]["url"].split(",", 1)[1]
            shown.append({"role": "assistant", "content": {"path": _write(out_dir, ".png", data)}})
        elif item["type"] == "output_audio":
            a = item["output_audio"]
            shown.append({"role": "assistant", "content": {"path": _write(out_dir, "." + a["format"], a["data"])}})
    if message.get("audio"):
        a = message["audio"]
        shown.append({"role": "assistant", "content": {"path": _write(out_dir, "." + a["format"], a["data"])}})
    if not shown:
        shown.append({"role": "assistant", "content": "(empty reply)"})
    return shown


def _write(out_dir: Path, suffix: str, data_b64: str) -> str:
    fd, path = tempfile.mkstemp(suffix=suffix, dir=out_dir)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data_b64))
    return path


def _history_message(message: dict[str, Any]) -> dict[str, Any]:
    """The reply as the next request's history holds it: speech by its id (not its bytes)."""
    kept = {"role": "assistant", "content": message["content"]}
    if message.get("audio"):
        kept["audio"] = {"id": message["audio"]["id"]}
    return kept


def build_demo(service, *, out_dir: str | Path | None = None):
    """-> gr.Blocks around a started ChatService. out_dir: where reply media are written for the
    page to show (default: a new temporary folder)."""
    import gradio as gr

    from anygpt.serve import replies
    from anygpt.serve.errors import APIError
    from anygpt.serve.schemas import ChatRequest

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="anygpt-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    can_write = ["text"] + [name for name, m in (("image", "image"), ("audio", "speech"), ("music", "music"))
                            if m in service.model.tokenizers]

    def send(text, image, speech, music, voice, outputs, max_tokens, seed, shown, messages):
        try:
            user = user_message(text, image, speech, music)
            audio: dict[str, Any] = {"voice": "default", "format": "wav"}
            if voice and "audio" in outputs:
                fmt = AUDIO_SUFFIXES.get(Path(voice).suffix.lower(), "wav")
                audio["voice"] = {"data": _b64_file(voice), "format": fmt}
            request = ChatRequest(messages=messages + [user], modalities=outputs or ["text"], audio=audio,
                                  max_tokens=int(max_tokens), seed=int(seed))
            result = service.complete(request)
        except (APIError, ValueError) as e:
            raise gr.Error(str(e)) from None
        reply = replies.message(result)
        shown = shown + _shown_user(text, image, speech, music) + _shown_reply(reply, out)
        return shown, messages + [user, _history_message(reply)], "", None, None, None

    with gr.Blocks(title="anygpt demo", analytics_enabled=False) as demo:
        gr.Markdown(f"### anygpt: {service.config.model_name}")
        chat = gr.Chatbot(label="conversation", height=460, elem_id="chat")
        messages = gr.State([])
        with gr.Row():
            text = gr.Textbox(label="message", placeholder="Write a message...", lines=2, scale=4, elem_id="message")
            send_button = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        with gr.Row():
            image = gr.Image(label="image", type="filepath", sources=["upload"], height=160)
            speech = gr.Audio(label="speech (microphone or file)", type="filepath", sources=["microphone", "upload"])
            music = gr.Audio(label="music", type="filepath", sources=["upload"])
        with gr.Accordion("reply options", open=True):
            with gr.Row():
                outputs = gr.CheckboxGroup(can_write, value=["text"], label="reply with", elem_id="outputs")
                voice = gr.Audio(label="voice to clone (~3 s of speech)", type="filepath",
                                 sources=["upload", "microphone"])
            with gr.Row():
                max_tokens = gr.Slider(8, 2000, value=200, step=1, label="max tokens")
                seed = gr.Number(value=0, precision=0, label="seed")
                clear = gr.Button("Clear conversation")
        inputs = [text, image, speech, music, voice, outputs, max_tokens, seed, chat, messages]
        results = [chat, messages, text, image, speech, music]
        send_button.click(send, inputs, results)
        text.submit(send, inputs, results)
        clear.click(lambda: ([], []), None, [chat, messages])
    demo.queue(default_concurrency_limit=service.config.max_batch)
    return demo


def offline_theme():
    """Gradio's default look with the browser's own fonts (the default theme loads Google Fonts)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])


def launch(demo, *, host: str, port: int, block: bool):
    """Start the demo's server bound to (host, port), offline; block=False returns at once."""
    return demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                       prevent_thread_lock=not block, theme=offline_theme(), css=CSS, ssr_mode=False,
                       mcp_server=False, show_error=True, quiet=True)


def build_parser() -> argparse.ArgumentParser:
    from anygpt.serve.cli import service_parser

    p = service_parser("anygpt demo", __doc__, EXAMPLE, 7860)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where reply media are written for the page (default: a temporary folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    from anygpt.serve.cli import check_service_options, load_service

    parser = build_parser()
    args = parser.parse_args(argv)
    check_service_options(parser, args)
    from anygpt.errors import AnyGPTError

    try:
        service = load_service(args)
        demo = build_demo(service, out_dir=args.out)
    except (AnyGPTError, ValueError, ImportError) as e:
        if args.debug:
            raise
        print(f"anygpt demo: {e}", file=sys.stderr)
        return 1
    service.start()
    print(f"anygpt demo: {service.config.model_name} on http://{args.host}:{args.port}", file=sys.stderr)
    try:
        launch(demo, host=args.host, port=args.port, block=True)
    finally:
        service.stop()
    return 0

