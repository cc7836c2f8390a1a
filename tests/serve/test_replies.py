"""anygpt.serve.replies: a finished job -> OpenAI's chat.completion / chunk JSON shapes."""

import base64
import json

from anygpt.lm.generation import GenerationSettings
from anygpt.parts import CodesPart, TextPart
from anygpt.serve import replies
from anygpt.serve.jobs import Job
from anygpt.serve.scheduler import JobResult, RenderedMedia
from anygpt.templates import Turn

MODEL = "tiny-test"


def small_job():
    return Job([Turn("user", [TextPart("hi")])], {None: GenerationSettings(max_new_tokens=4)})


def test_text_completion_shape_and_usage():
    job = small_job()
    result = JobResult([TextPart("Hello "), TextPart("world ")], [], "length", prompt_tokens=7, completion_tokens=4)
    body = replies.completion(job, result, MODEL)
    assert json.loads(json.dumps(body)) == body
    assert (body["id"], body["object"], body["created"], body["model"]) == (job.id, "chat.completion", job.created, MODEL)
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello world"},
                                "finish_reason": "length", "logprobs": None}]
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_media_become_content_parts_and_speech_becomes_audio():
    parts = [TextPart("look "), TextPart("here"), CodesPart("image", [[1, 2]]),
             TextPart("<-Res-> it says hi"), CodesPart("speech", [[3]]), CodesPart("music", [[4], [5]])]
    media = [RenderedMedia("image", b"PNGDATA", "png"), RenderedMedia("speech", b"WAV1", "wav", 16000, "audio_x"),
             RenderedMedia("music", b"WAV2", "wav", 32000)]
    msg = replies.message(JobResult(parts, media, "stop", 3, 9))
    assert msg["content"][0] == {"type": "text", "text": "look here"}
    assert msg["content"][1] == {"type": "image_url",
                                 "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"PNGDATA").decode()}}
    assert msg["content"][2] == {"type": "text", "text": "<-Res-> it says hi"}
    assert msg["content"][3] == {"type": "output_audio", "output_audio": {
        "data": base64.b64encode(b"WAV2").decode(), "format": "wav", "sample_rate": 32000, "kind": "music"}}
    audio = msg["audio"]
    assert (audio["id"], audio["transcript"], audio["kind"], audio["sample_rate"]) == ("audio_x", "it says hi",
                                                                                       "speech", 16000)
    assert base64.b64decode(audio["data"]) == b"WAV1"


def test_speech_only_reply_keeps_text_content():
    parts = [TextPart("hi"), CodesPart("speech", [[3]])]
    msg = replies.message(JobResult(parts, [RenderedMedia("speech", b"W", "wav", 16000, "audio_y")], "stop", 1, 2))
    assert msg["content"] == "hi" and msg["audio"]["id"] == "audio_y"


def test_chunks():
    job = small_job()
    c = replies.chunk(job, MODEL, {"content": "He"})
    assert c["object"] == "chat.completion.chunk" and c["id"] == job.id
    assert c["choices"] == [{"index": 0, "delta": {"content": "He"}, "finish_reason": None, "logprobs": None}]
    assert replies.chunk(job, MODEL, {}, "stop")["choices"][0]["finish_reason"] == "stop"
    u = replies.usage_chunk(job, MODEL, JobResult([], [], "stop", 2, 3))
    assert u["choices"] == [] and u["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
