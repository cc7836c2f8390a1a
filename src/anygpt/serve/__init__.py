"""Serving: an OpenAI-compatible HTTP API (`anygpt serve`) and a Gradio web demo (`anygpt demo`).

    errors.py       APIError: an HTTP status plus OpenAI's error JSON
    schemas.py      the request body of /v1/chat/completions (pydantic)
    media.py        base64 and data URLs -> media tensors (with limits); reply media -> bytes
    media_cache.py  codes of media already seen, by content hash (bounded LRU)
    jobs.py         a validated request -> Job (turns with media decoded or cached, settings)
    scheduler.py    the thread that owns the model and engine and batches queued jobs
    replies.py      a finished job -> OpenAI's response, and streamed events -> SSE chunks
    gates.py        ASGI middlewares: API key, body size
    app.py          the FastAPI app (routes, SSE) and `running_server` (uvicorn in a thread)
    cli.py          `anygpt serve`
    demo.py         `anygpt demo` (Gradio, offline)

docs/serve.md describes the API and its extensions (music parts, voice prompts, modalities).
The package imports model and engine, never data or train.
"""
