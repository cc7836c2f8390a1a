"""One micro build per test session, shared by the data tests (it takes about 15 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anygpt.data import build_corpora


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("micro")
    build_corpora("micro", out, seed=0, progress=False)
    return out
