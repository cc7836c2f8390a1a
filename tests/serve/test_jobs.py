"""anygpt.serve.jobs: a ChatRequest -> Job, every client mistake a 400/404/413 naming the field."""

import base64

import pytest

from anygpt.parts import CodesPart, TextPart
from anygpt.serve.errors import APIError
from anygpt.serve.jobs import PendingMedia, build_job, max_text_bytes
from anygpt.serve.media import MediaLimits
from anygpt.serve.media_cache import MediaCache, content_key
from anygpt.serve.schemas import ChatRequest
from serve_helpers import MODEL, png_url


def job_of(anygpt, /, limits=MediaLimits(), cache=None, max_text=None, **body):
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return build_job(ChatRequest(**body), anygpt, cache or MediaCache(), limits, model_name=MODEL, timeout=30,
                     max_text=max_text, context_tokens=64)


def refused(anygpt, status, param, /, **body):
    with pytest.raises(APIError) as e:
        job_of(anygpt, **body)
    assert (e.value.status, e.value.param) == (status, param), e.value.message
    return e.value


def test_text_request_becomes_a_job(media_model):
    job = job_of(media_model, seed=5, temperature=0, max_tokens=7,
                 messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert job.system == "be brief" and [t.role for t in job.turns] == ["user"]
    assert job.turns[0].parts == [TextPart("hi")]
    assert (job.force, job.ensure, job.banned, job.seed) == (None, [], ["image", "speech", "music"], 5)
    assert job.settings[None].max_new_tokens == 7 and job.settings[None].do_sample is False


def test_modalities_decide_force_ensure_and_banned(media_model):
    job = job_of(media_model, modalities=["text", "image"])
    assert (job.force, job.ensure, job.banned) == (None, ["image"], ["speech", "music"])
    assert set(job.settings) == {None, "image"}
    job = job_of(media_model, modalities=["audio"])
    assert (job.force, job.ensure, job.banned) == ("speech", [], ["image", "music"])


def test_request_mistakes_name_their_field(media_model):
    assert refused(media_model, 404, "model", model="gpt-4").code == "model_not_found"
    refused(media_model, 400, "n", n=2)
    refused(media_model, 400, "stop", stop=["\n"])
    refused(media_model, 400, "modalities[1]", modalities=["text", "smell"])
    refused(media_model, 400, "force_modality", modalities=["text", "image"], force_modality="music")
    refused(media_model, 400, "max_tokens", modalities=["image"], max_tokens=10)
    refused(media_model, 400, "messages", messages=[{"role": "user", "content": "hi"},
                                                    {"role": "assistant", "content": "yo"}])
    refused(media_model, 400, "messages[0].content", messages=[{"role": "user", "content": "   "}])
    refused(media_model, 400, "audio.format", audio={"format": "ogg"})
    e = refused(media_model, 400, "messages[0].content", max_text=1)
    assert e.code == "context_length_exceeded" and "64 tokens" in e.message


def test_images_are_decoded_once_then_taken_from_the_cache(media_model):
    url = png_url()
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    cache = MediaCache()
    pending = job_of(media_model, cache=cache, **body).turns[0].parts[0]
    assert isinstance(pending, PendingMedia)
    assert pending.key == content_key("image", base64.b64decode(url.split(",", 1)[1]))
    assert tuple(pending.media.shape) == (3, 64, 64)
    cache.put(pending.key, CodesPart("image", [[1, 2, 3]]).codes)
    assert job_of(media_model, cache=cache, **body).turns[0].parts == [CodesPart("image", [[1, 2, 3]])]
    too_big = refused(media_model, 413, "messages[0].content[0].image_url.url",
                      limits=MediaLimits(max_request_pixels=100), **body)
    assert too_big.code == "too_large"


def test_max_text_bytes_is_context_times_longest_token():
    class Vocab:
        def get_vocab(self):
            return {"a": 0, "héllo": 1}
    assert max_text_bytes(Vocab(), 10) == 60
