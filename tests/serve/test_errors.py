"""What a client can get wrong, and the server's limits: 400 / 404 / 413 with OpenAI's error
JSON naming the field, 401 without the API key, 503 with Retry-After when the queue is full,
504 on timeout, cancellation when a client disconnects; and no request makes the server open a
path or unpickle anything."""

from __future__ import annotations

import base64
import builtins
import io
import pickle
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import openai
import pytest
import torch
from PIL import Image

from serve_helpers import MODEL, live, png_url, wav_b64

from anygpt.serve.app import create_app, running_server
from anygpt.serve.service import ChatService, ServeConfig


def post(url, body, timeout: float = 60, **kw):
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=timeout, **kw)


def user(content):
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4}


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(data, fmt="wav", **extra):
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt, **extra}}


def error_of(response, status):
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


PNG_HEADER_THEN_JUNK = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(200)).decode()
JPEG_AS_PNG = png_url(fmt="JPEG").replace("image/jpeg", "image/png")


@pytest.mark.parametrize("content,param,words", [
    ([image_part("data:image/png;base64,@@not base64@@")], "messages[0].content[0].image_url.url", "base64"),
    ([image_part(png_url().replace("image/png", "image/tiff"))], "messages[0].content[0].image_url.url", "MIME"),
    ([image_part(PNG_HEADER_THEN_JUNK)], "messages[0].content[0].image_url.url", "PNG"),
    ([image_part(JPEG_AS_PNG)], "messages[0].content[0].image_url.url", "JPEG"),
    ([image_part("https://example.com/cat.png")], "messages[0].content[0].image_url.url", "data: URLs"),
    ([image_part("file:///etc/hostname")], "messages[0].content[0].image_url.url", "data: URLs"),
    ([audio_part(base64.b64encode(b"RIFF" + bytes(60)).decode())], "messages[0].content[0].input_audio.data", "cannot read audio"),
    ([audio_part(wav_b64(0.2), fmt="aac")], "messages[0].content[0].input_audio.format", "unsupported audio format"),
    ([audio_part(wav_b64(0.2), fmt="flac")], "messages[0].content[0].input_audio.data", "not flac"),
    ([audio_part(wav_b64(0.2), kind="noise")], "messages[0].content[0].input_audio.kind", "speech, music"),
    ([{"type": "video_url", "video_url": {}}], "messages[0].content[0].type", "not a user content part"),
    ([audio_part("/etc/hostname")], "messages[0].content[0].input_audio.data", "base64"),
    # one reader for files and uploads (anygpt.media_io): the command line's checks hold here too
    ([audio_part(base64.b64encode(base64.b64decode(wav_b64(0.5))[:-4000]).decode())],
     "messages[0].content[0].input_audio.data", "the WAV file is cut short"),
])
def test_bad_media_is_a_400_naming_the_field(server, content, param, words):
    err = error_of(post(server[0], user(content)), 400)
    assert err["param"] == param and words in err["message"] and err["message"].startswith(param)


@pytest.mark.parametrize("change,param", [
    ({"modalities": ["smell"]}, "modalities[0]"),
    ({"n": 2}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"modalities": ["image"], "max_tokens": 10}, "max_tokens"),
    ({"audio": {"voice": "alloy"}, "modalities": ["audio"]}, "audio.voice"),
    ({"audio": {"voice": "default", "format": "opus"}, "modalities": ["audio"]}, "audio.format"),
    ({"force_modality": "image"}, "force_modality"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "audio": {"id": "audio_nope"}},
                   {"role": "user", "content": "?"}]}, "messages[1].audio.id"),
])
def test_bad_fields_are_a_400_naming_the_field(server, change, param):
    err = error_of(post(server[0], {**user("hi"), **change}), 400)
    assert err["param"] == param, err


def test_unknown_model_is_404_and_bad_json_is_400(server):
    assert error_of(post(server[0], {**user("hi"), "model": "gpt-9"}), 404)["code"] == "model_not_found"
    r = httpx.post(server[0] + "/v1/chat/completions", content=b"{not json", timeout=30,
                   headers={"content-type": "application/json"})
    assert "invalid JSON" in error_of(r, 400)["message"]


def test_the_official_client_sees_the_error(server):
    client = openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image_part("data:image/png;base64,xx!")]}])
    assert e.value.body["param"] == "messages[0].content[0].image_url.url"


def test_oversize_body_attachment_image_and_audio_are_413(media_model):
    from anygpt.serve.media import MediaLimits

    limits = MediaLimits(max_bytes=50_000, max_pixels=100 * 100, max_audio_seconds=2.0)
    with live(media_model, max_body_bytes=200_000, limits=limits) as (url, _):
        big = base64.b64encode(bytes(300_000)).decode()
        assert error_of(post(url, user([audio_part(big)])), 413)["param"] == "body"
        mid = base64.b64encode(bytes(60_000)).decode()
        assert error_of(post(url, user([audio_part(mid)])), 413)["param"] == "messages[0].content[0].input_audio.data"
        err = error_of(post(url, user([image_part(png_url(size=(200, 120)))])), 413)
        assert "200 x 120" in err["message"]
        err = error_of(post(url, user([audio_part(wav_b64(3.0, sample_rate=8000))])), 413)
        assert "3.0 s" in err["message"]
        assert post(url, user([image_part(png_url(size=(90, 90))), audio_part(wav_b64(1.0))])).status_code == 200


def test_api_key_on_every_route_but_health(media_model):
    with live(media_model, api_key="s3cret") as (url, _):
        assert httpx.get(url + "/health").status_code == 200
        assert error_of(httpx.get(url + "/v1/models"), 401)["code"] == "invalid_api_key"
        assert error_of(post(url, user("hi")), 401)["code"] == "invalid_api_key"
        assert error_of(post(url, user("hi"), headers={"Authorization": "Bearer wrong"}), 401)
        client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=3).choices[0].message.content is not None
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()


class HeldEngine:
    """Wraps the scheduler's engine: its decoder's steps wait until released; records the
    requests that joined and the results of those that finished."""

    def __init__(self, engine, stopping: threading.Event):
        self.engine, self.release, self.results, self.waiting = engine, threading.Event(), [], []
        self.stopping = stopping  # the scheduler's stop event: a held step ends when the server stops
        self.max_len, self.max_batch, self.vocab_size = engine.max_len, engine.max_batch, engine.vocab_size

    def decoder(self, **kw):
        return HeldDecoder(self, self.engine.decoder(**kw))


class HeldDecoder:
    def __init__(self, held, dec):
        self.held, self.dec = held, dec

    def __getattr__(self, name):
        return getattr(self.dec, name)

    def prefill(self, request, **kw):
        self.held.waiting.append(request)
        return self.dec.prefill(request, **kw)

    def prefill_many(self, requests, **kw):  # the scheduler's way in (several jobs joining at once)
        self.held.waiting.extend(requests)
        return self.dec.prefill_many(requests, **kw)

    def step(self, **kw):
        # held until the test releases it, however long a loaded machine takes to get there
        while not self.held.release.wait(0.05) and not self.held.stopping.is_set():
            pass
        if "adopt" in kw:  # the intake thread's rows joining the batch, from decoders wrapped too
            kw["adopt"] = [d.dec if isinstance(d, HeldDecoder) else d for d in kw["adopt"]]
        done = self.dec.step(**kw)
        self.held.results += [s.result for s in done]
        return done


@contextmanager
def live_held(model, **config):
    """(base URL, service, HeldEngine) of a live server whose scheduler decodes on a HeldEngine.
    The engine is wrapped before the server starts the scheduler's thread: that thread builds
    its decoder from scheduler.engine, so a swap after the start could race with it and leave
    the requests on an unheld decoder."""
    service = ChatService(model, ServeConfig(model_name=MODEL, **config))
    scheduler = service.scheduler
    held = scheduler.engine = HeldEngine(scheduler.engine, scheduler._stop)
    with running_server(create_app(service)) as url:
        yield url, service, held


def wait_until(cond, seconds=120.0):
    end = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


def test_full_queue_is_503_with_retry_after(media_model):
    # the held requests wait for every bounded wait below (up to 2 x 120 s on a loaded machine):
    # neither the server's request timeout nor the client's may end them first, or a slow run
    # turns them into 504s
    with live_held(media_model, max_batch=1, max_queue=1, retry_after=2, timeout=3600) as (url, service, held):
        answers = {}
        held_post = lambda text: post(url, user(text), timeout=600)  # noqa: E731
        first = threading.Thread(target=lambda: answers.setdefault("a", held_post("one")))
        first.start()
        wait_until(lambda: service.scheduler.running == 1)
        second = threading.Thread(target=lambda: answers.setdefault("b", held_post("two")))
        second.start()
        wait_until(lambda: service.scheduler.queued == 1)
        r = post(url, user("three"))
        assert error_of(r, 503)["code"] == "server_busy" and r.headers["retry-after"] == "2"
        held.release.set()
        first.join(600), second.join(600)
        assert answers["a"].status_code == answers["b"].status_code == 200


def test_timeout_is_504_and_stops_the_work(media_model):
    with live_held(media_model, timeout=0.5) as (url, _, held):
        r = post(url, {**user("hi"), "max_tokens": 200})
        assert error_of(r, 504)["code"] == "timeout"
        held.release.set()
        wait_until(lambda: held.results)
        assert held.results[0].finish_reason == "cancelled" and len(held.results[0].ids) < 200


def test_a_client_that_disconnects_cancels_its_request(media_model):
    with live_held(media_model) as (url, _, held):
        body = {**user("Tell me everything."), "max_tokens": 2000, "stream": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
            first = next(r.iter_lines())
            assert first.startswith("data: ")
        wait_until(lambda: held.waiting and held.waiting[0].cancel.is_set())  # seen while nothing is written
        held.release.set()
        wait_until(lambda: held.results)
        assert held.results[0].finish_reason == "cancelled" and len(held.results[0].ids) < 2000


def test_requests_never_open_their_paths_or_unpickle(server, monkeypatch):
    opened, unpickled = [], []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, lambda *a, **k: unpickled.append(a) or None)
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a) or None)
    payload = base64.b64encode(pickle.dumps({"evil": 1})).decode()
    paths = ["/etc/hostname", "file:///etc/hostname", "../../etc/hostname"]
    for p in paths:
        post(server[0], user([image_part(p)]))
        post(server[0], user([audio_part(p)]))
        post(server[0], {**user("hi"), "modalities": ["audio"], "audio": {"voice": p}})
        post(server[0], {**user("hi"), "modalities": ["audio"], "audio": {"voice": {"data": p, "format": "wav"}}})
    assert post(server[0], user([audio_part(payload)])).status_code == 400
    assert post(server[0], user([image_part("data:image/png;base64," + payload)])).status_code == 400
    assert post(server[0], user("still fine")).status_code == 200
    assert not unpickled
    assert not [f for f in opened if "hostname" in f]


def test_corrupt_pixels_after_a_valid_header_are_a_400(server):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    broken = data[:100] + bytes(len(data) - 100)  # header intact, compressed pixels zeroed
    url = "data:image/png;base64," + base64.b64encode(broken).decode()
    err = error_of(post(server[0], user([image_part(url)])), 400)
    assert err["param"] == "messages[0].content[0].image_url.url" and "cannot read image" in err["message"]


def test_a_failure_inside_one_request_leaves_the_server_running(server, monkeypatch):
    tok = server[1].model.tokenizers["image"]

    def broken(media):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(tok, "encode_item", broken)
    err = error_of(post(server[0], user([image_part(png_url(color=(1, 2, 3)))])), 500)
    assert "simulated bug" in err["message"]
    assert post(server[0], user("still answering")).status_code == 200
