"""Fixtures of the serving tests: a random tiny LM in the shipped tiny tokenizers' layout (so
images, speech and music really come out as media) and a live server for a module."""

from __future__ import annotations

import openai
import pytest

from anygpt.loaders import random_media_model
from serve_helpers import SCREENSHOTS, live


def pytest_terminal_summary(terminalreporter):
    for path in SCREENSHOTS:
        terminalreporter.write_line(f"demo screenshot: {path}")


@pytest.fixture(scope="session")
def media_model():
    return random_media_model(seed=0)


@pytest.fixture(scope="module")
def server(media_model):
    with live(media_model) as (url, service):
        yield url, service


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=120)
