"""Helpers of the serving tests (a module name no other test folder uses): a live server on
127.0.0.1 and a free port, stopped on exit, and small media made here."""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager

import numpy as np
import soundfile as sf
from PIL import Image

from anygpt.serve.app import create_app, running_server
from anygpt.serve.service import ChatService, ServeConfig

MODEL = "random-64x2-media"
SCREENSHOTS: list = []  # screenshots the browser tests saved, listed in the test summary


@contextmanager
def live(model, **config):
    """(base URL, service) of a server on 127.0.0.1:free port; stopped on exit."""
    service = ChatService(model, ServeConfig(model_name=MODEL, **config))
    with running_server(create_app(service)) as url:
        yield url, service


def wav_b64(seconds: float = 1.0, sample_rate: int = 16000, freq: float = 220.0, seed: int = 0) -> str:
    """A tone plus a little noise, as base64 WAV."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def png_url(size: tuple[int, int] = (48, 32), color=(200, 30, 30), fmt: str = "PNG") -> str:
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), color), (4, 4))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif"}[fmt]
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def decode_data_url_image(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
