"""Continuous batching through the server: a short request that arrives while long replies run
joins the running batch and is answered before they end, even when the long replies would fill
every slot (they hold at most all but a quarter of them)."""

from __future__ import annotations

import json
import threading

import httpx

from serve_helpers import MODEL, live


def stream_music(url: str, seed: int, events: list, started: threading.Event) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Play."}], "modalities": ["music"],
            "max_tokens": 1200, "seed": seed, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                started.set()
                if json.loads(line[6:]).get("choices", [{}])[0].get("finish_reason"):
                    events.append(f"music {seed} done")


def test_a_short_request_is_answered_while_long_replies_run(media_model):
    with live(media_model, max_batch=2) as (url, service):
        events: list = []
        started = [threading.Event(), threading.Event()]
        music = [threading.Thread(target=stream_music, args=(url, i, events, started[i])) for i in range(2)]
        music[0].start()
        assert started[0].wait(120)
        music[1].start()  # a second long reply: with 2 slots, it waits for the first (one slot stays short)
        r = httpx.post(url + "/v1/chat/completions", timeout=300,
                       json={"model": MODEL, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4})
        events.append("text done")
        assert r.status_code == 200
        for t in music:
            t.join(300)
        assert events[0] == "text done" and sorted(events[1:]) == ["music 0 done", "music 1 done"]
        assert service.scheduler.largest_batch == 2


def test_stopping_the_service_answers_every_running_and_waiting_request(media_model):
    from anygpt.serve.errors import APIError
    from anygpt.serve.schemas import ChatRequest
    from anygpt.serve.service import ChatService, ServeConfig

    service = ChatService(media_model, ServeConfig(model_name=MODEL, max_batch=1)).start()
    jobs = [service.job(ChatRequest(messages=[{"role": "user", "content": f"Tell me a story {i}."}],
                                    max_tokens=3000, seed=i)) for i in range(3)]
    for job in jobs:
        service.scheduler.submit(job)
    while service.scheduler.running == 0:
        threading.Event().wait(0.02)
    service.stop()
    for job in jobs:
        error = job.future.exception(timeout=60)
        assert isinstance(error, APIError) and error.status in (499, 503)


def test_a_streamed_music_piece_renders_off_the_decode_thread_and_keeps_its_place(media_model, monkeypatch):
    """Rendering a streamed music piece (~0.1 s on anygpt-tiny) must not hold up the other
    requests' tokens: while it is blocked here, a text request is answered; once it ends, the
    piece reaches its stream before the stream's end."""
    rendering, release, threads = threading.Event(), threading.Event(), []
    decode_media = media_model.decode_media

    def slow_decode(part, **kw):
        if part.modality == "music":
            threads.append(threading.current_thread().name)
            rendering.set()
            assert release.wait(120)
        return decode_media(part, **kw)

    monkeypatch.setattr(media_model, "decode_media", slow_decode)
    with live(media_model, max_batch=2) as (url, service):
        chunks: list = []

        def stream() -> None:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "Play."}], "modalities": ["music"],
                    "max_tokens": 1200, "seed": 3, "stream": True}
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        choice = json.loads(line[6:])["choices"][0]
                        content = choice["delta"].get("content")
                        chunks.append("media" if isinstance(content, list) else
                                      "end" if choice.get("finish_reason") else "text")

        music = threading.Thread(target=stream)
        music.start()
        assert rendering.wait(120)
        r = httpx.post(url + "/v1/chat/completions", timeout=60,
                       json={"model": MODEL, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4})
        assert r.status_code == 200 and "media" not in chunks  # answered while the piece still renders
        release.set()
        music.join(300)
    assert threads and all(name.startswith("anygpt-render") for name in threads)
    assert chunks.count("media") == 1 and chunks[-1] == "end" and chunks.index("media") < chunks.index("end")
