"""The official `openai` client against a live server on 127.0.0.1: text, images, speech and
music in and out, streaming, multi-turn with the media cache, concurrent requests."""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import soundfile as sf

from serve_helpers import MODEL, decode_data_url_image, png_url, wav_b64


def ask(client, content, **kw):
    kw.setdefault("max_tokens", 24)
    kw.setdefault("seed", 1)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **kw)


def parts_of(message, kind):
    return [p for p in (message.content if isinstance(message.content, list) else []) if p["type"] == kind]


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list()] == [MODEL]
    import httpx

    health = httpx.get(server[0] + "/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL and "media_cache" in health


def test_text_in_text_out_is_repeatable_by_seed(client):
    a = ask(client, "Hello there.", seed=7)
    b = ask(client, "Hello there.", seed=7)
    c = ask(client, "Hello there.", seed=8)
    msg = a.choices[0].message
    assert msg.role == "assistant" and isinstance(msg.content, str) and msg.content
    assert a.choices[0].finish_reason in ("stop", "length")
    assert a.usage.completion_tokens <= 24 and a.usage.prompt_tokens > 10
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    assert msg.content == b.choices[0].message.content != c.choices[0].message.content
    assert msg.audio is None


def test_image_in_text_out(client, media_model):
    text_only = ask(client, [{"type": "text", "text": "What is this?"}])
    r = ask(client, [{"type": "image_url", "image_url": {"url": png_url()}}, {"type": "text", "text": "What is this?"}])
    assert isinstance(r.choices[0].message.content, str)
    # the image is in the prompt as its 32 codes between its two markers (plus a joining space)
    spec = media_model.layout["image"].spec
    assert r.usage.prompt_tokens - text_only.usage.prompt_tokens >= spec.frames_per_item + 2


def test_text_in_image_out(client):
    r = ask(client, "Draw a red square.", modalities=["image"], max_tokens=40)
    (image,) = parts_of(r.choices[0].message, "image_url")
    img = decode_data_url_image(image["image_url"]["url"])
    assert img.size == (64, 64) and img.mode == "RGB"
    assert np.asarray(img).std() > 0  # real pixels from the tiny image decoder


def test_text_and_image_out_always_holds_the_image(client):
    r = ask(client, "Describe and draw a cat.", modalities=["text", "image"], max_tokens=40)
    content = r.choices[0].message.content
    assert [p["type"] for p in content][-1] == "image_url" or len(parts_of(r.choices[0].message, "image_url")) == 1
    assert any(p["type"] == "text" and p["text"] for p in content)


def wav_of(b64: str):
    data, sr = sf.read(io.BytesIO(base64.b64decode(b64)))
    return data, sr


def test_speech_in_speech_out_and_the_next_turn_refers_to_it(client, server):
    spoken = {"type": "input_audio", "input_audio": {"data": wav_b64(1.0), "format": "wav"}}
    r = ask(client, [spoken, {"type": "text", "text": "Answer in speech."}], modalities=["text", "audio"],
            audio={"voice": "default", "format": "wav"}, max_tokens=40)
    msg = r.choices[0].message
    samples, sr = wav_of(msg.audio.data)
    assert sr == 16000 and samples.size > 0 and np.abs(samples).max() > 0
    assert msg.audio.id.startswith("audio_") and msg.audio.transcript == msg.content.strip()
    assert msg.audio.expires_at > 0
    # the next turn names the reply's audio by id, as OpenAI's clients do
    service = server[1]
    before = service.cache.stats()["hits"]
    history = [{"role": "user", "content": [spoken]}, {"role": "assistant", "audio": {"id": msg.audio.id}},
               {"role": "user", "content": "And again."}]
    r2 = client.chat.completions.create(model=MODEL, messages=history, max_tokens=8, seed=1)
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens  # the earlier speech is in the prompt
    assert service.cache.stats()["hits"] >= before + 2  # the user's speech and the reply's, both from the cache


def test_music_in_music_out(client):
    music = {"type": "input_audio", "input_audio": {"data": wav_b64(0.5, freq=440.0), "format": "wav", "kind": "music"}}
    r = ask(client, [music, {"type": "text", "text": "Continue this."}], modalities=["music"], max_tokens=41)
    (out,) = parts_of(r.choices[0].message, "output_audio")
    assert out["output_audio"]["kind"] == "music" and out["output_audio"]["format"] == "wav"
    samples, sr = wav_of(out["output_audio"]["data"])
    assert sr == 16000 and samples.size >= 16000 // 50 * 10  # at least 10 frames of 4 codebooks in 41 tokens


def test_voice_prompt_sets_the_voice(client):
    kw = dict(modalities=["audio"], max_tokens=30, seed=3)
    default = ask(client, "Say hi.", audio={"voice": "default", "format": "wav"}, **kw).choices[0].message.audio
    prompt = {"data": wav_b64(3.0, freq=180.0, seed=5), "format": "wav"}
    cloned = ask(client, "Say hi.", audio={"voice": prompt, "format": "wav"}, **kw).choices[0].message.audio
    again = ask(client, "Say hi.", audio={"voice": prompt, "format": "wav"}, **kw).choices[0].message.audio
    a, b, c = (wav_of(x.data)[0] for x in (default, cloned, again))
    assert a.shape == b.shape and not np.allclose(a, b)  # same codes, another voice
    assert np.array_equal(b, c)


def test_streaming_text_matches_the_whole_reply(client):
    whole = ask(client, "Tell me a story.", seed=11, max_tokens=30).choices[0].message.content
    stream = ask(client, "Tell me a story.", seed=11, max_tokens=30, stream=True, stream_options={"include_usage": True})
    deltas, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(deltas).strip() == whole and len(deltas) > 3  # deltas, not one block
    assert finish in ("stop", "length") and usage.completion_tokens <= 30


def test_streaming_speech_arrives_in_chunks_before_the_reply_ends(client):
    stream = ask(client, "Say something long.", modalities=["audio"], audio={"voice": "default", "format": "pcm16"},
                 max_tokens=80, seed=2, stream=True)
    events = []
    for chunk in stream:
        for choice in chunk.choices:
            audio = getattr(choice.delta, "audio", None)
            if audio is not None and getattr(audio, "data", None):
                events.append(("audio", len(base64.b64decode(audio.data))))
            elif audio is not None and getattr(audio, "transcript", None) is not None:
                events.append(("done", audio.id))
            if choice.finish_reason:
                events.append(("finish", choice.finish_reason))
    audio = [n for kind, n in events if kind == "audio"]
    assert len(audio) >= 2 and all(n % 2 == 0 for n in audio)  # pcm16 pieces
    assert events[-1][0] == "finish" and events[0][0] == "audio"
    assert [k for k, _ in events].index("done") > [k for k, _ in events].index("audio")
    # 80 tokens of speech at most: 79 frames of 640 samples (25 Hz at 16 kHz), 2 bytes each
    assert sum(audio) <= 79 * 640 * 2


def test_streaming_image_arrives_as_one_part(client):
    stream = ask(client, "Draw.", modalities=["image"], max_tokens=40, stream=True)
    images = [p for chunk in stream for c in chunk.choices if isinstance(c.delta.content, list)
              for p in c.delta.content if p["type"] == "image_url"]
    assert len(images) == 1 and decode_data_url_image(images[0]["image_url"]["url"]).size == (64, 64)


def test_concurrent_requests_are_batched_and_each_gets_its_own_reply(client, server):
    prompts = [f"Question number {i}." for i in range(6)]
    alone = [ask(client, p, seed=i, max_tokens=16).choices[0].message.content for i, p in enumerate(prompts)]
    service = server[1]
    service.scheduler.largest_batch = 0
    gate = threading.Barrier(len(prompts))
    together: list = [None] * len(prompts)

    def run(i):
        gate.wait()
        together[i] = ask(client, prompts[i], seed=i, max_tokens=16).choices[0].message.content

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone  # a request's reply does not depend on what it was batched with
    assert service.scheduler.largest_batch > 1


def test_multi_turn_does_not_reencode_earlier_media(client, server, monkeypatch):
    service = server[1]
    tok = service.model.tokenizers["image"]
    calls = []
    real = tok.encode_item
    monkeypatch.setattr(tok, "encode_item", lambda media: calls.append(1) or real(media))
    picture = {"type": "image_url", "image_url": {"url": png_url(color=(10, 200, 10))}}
    first = [{"role": "user", "content": [picture, {"type": "text", "text": "Draw it again."}]}]
    r1 = client.chat.completions.create(model=MODEL, messages=first, modalities=["image"], max_tokens=40, seed=4)
    assert len(calls) == 1
    reply = r1.choices[0].message.content  # holds the generated image as a data URL
    history = first + [{"role": "assistant", "content": reply}, {"role": "user", "content": "Thanks."}]
    r2 = client.chat.completions.create(model=MODEL, messages=history, max_tokens=8, seed=4)
    assert len(calls) == 1  # neither the user's picture nor the generated one was encoded again
    assert r2.usage.prompt_tokens > r1.usage.prompt_tokens + 32


def test_system_message_replaces_the_template_system_prompt(client):
    a = client.chat.completions.create(model=MODEL, max_tokens=4, seed=1, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    b = ask(client, "Hi", max_tokens=4)
    assert a.usage.prompt_tokens < b.usage.prompt_tokens  # 'Be brief.' is shorter than the default
