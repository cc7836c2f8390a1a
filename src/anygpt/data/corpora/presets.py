"""Build presets: how many items of each corpus, and which voices, instruments and splits.

micro builds in seconds (tests), tiny in minutes on 2 cores (training small tokenizers and
LMs on CPU), small is tiny scaled by ten. The same code builds all three; only numbers differ.
A preset is a frozen dataclass, so tests derive variants with dataclasses.replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Voice:
    """A TTS speaker: engine (flite|festival|espeak), the engine's voice name, and an
    optional augmentation (sox: pitch in semitones, which moves F0 and formants together,
    like a different vocal tract; tempo as a speed factor)."""

    engine: str
    name: str
    pitch: float = 0.0
    tempo: float = 1.0

    @property
    def augmented(self) -> bool:
        return self.pitch != 0.0 or self.tempo != 1.0

    @property
    def base_id(self) -> str:
        return f"{self.engine}-{self.name}"

    @property
    def speaker_id(self) -> str:
        """Stable speaker id, e.g. 'flite-kal' or 'flite-kal~p+3.0t1.10'."""
        if not self.augmented:
            return self.base_id
        return f"{self.base_id}~p{self.pitch:+.1f}t{self.tempo:.2f}"


# Base voices that appear in training (and val/test/heldout_sentences).
TRAIN_VOICES: tuple[Voice, ...] = (
    Voice("flite", "kal"), Voice("flite", "rms"), Voice("flite", "slt"),
    Voice("festival", "kal_diphone"), Voice("festival", "ked_diphone"),
    Voice("festival", "cmu_us_slt_arctic_hts"),
    Voice("espeak", "en-us+m3"), Voice("espeak", "en-us+f3"), Voice("espeak", "en-gb-x-rp+m1"),
    Voice("espeak", "en-029+f2"),
    # Augmented speakers (new vocal tract sizes and speaking rates of training voices).
    Voice("flite", "kal", pitch=3.0, tempo=1.1), Voice("flite", "slt", pitch=-2.5, tempo=0.95),
    Voice("flite", "rms", pitch=2.0, tempo=0.9), Voice("festival", "ked_diphone", pitch=-3.0, tempo=1.05),
    Voice("espeak", "en-us+f3", pitch=-2.0, tempo=1.0), Voice("espeak", "en-us+m3", pitch=4.0, tempo=1.1),
)
# Speakers never heard in training: zero-shot voice cloning is evaluated on these.
HELDOUT_VOICES: tuple[Voice, ...] = (
    Voice("flite", "awb"), Voice("espeak", "en-gb-scotland+f4"),
    Voice("flite", "kal", pitch=-4.0, tempo=0.9), Voice("espeak", "en-029+f2", pitch=2.5, tempo=1.05),
)

# General MIDI programs (0-based) used to render music, with their caption names.
INSTRUMENTS: dict[int, str] = {
    0: "acoustic grand piano", 6: "harpsichord", 11: "vibraphone", 19: "church organ",
    24: "nylon-string acoustic guitar", 40: "violin", 42: "cello", 48: "string ensemble",
    56: "trumpet", 68: "oboe", 71: "clarinet", 73: "flute",
}


@dataclass(frozen=True)
class SpeechPreset:
    """Clips per training speaker in each split, and clips per held-out speaker."""

    train_per_speaker: int
    val_per_speaker: int
    test_per_speaker: int
    heldout_sentences_per_speaker: int
    heldout_speaker_clips: int
    train_voices: tuple[Voice, ...] = TRAIN_VOICES
    heldout_voices: tuple[Voice, ...] = HELDOUT_VOICES
    sample_rate: int = 16000
    min_words: int = 4
    max_words: int = 16


@dataclass(frozen=True)
class MusicPreset:
    """Pieces (scores) and clips per piece; a share of the pieces is held out entirely."""

    n_pieces: int
    clips_per_piece: int
    heldout_piece_fraction: float = 0.1
    clip_seconds: float = 8.0
    sample_rate: int = 32000
    extra_sample_rate: int | None = 16000  # a second copy for 16 kHz tokenizers; None: none
    instruments: dict[int, str] = field(default_factory=lambda: dict(INSTRUMENTS))


@dataclass(frozen=True)
class ImagePreset:
    """Items per image source; 0 means none, -1 means every available asset."""

    n_emoji_google: int
    n_emoji_noto: int
    n_digits: int
    n_scenes: int
    n_heldout_scenes: int
    size: int = 64  # the image tokenizer's fixed size; originals are kept beside
    scene_original_size: int = 256


@dataclass(frozen=True)
class TextPreset:
    """Number of sentences and of short passages (multi-sentence entries)."""

    n_sentences: int
    n_passages: int
    min_words: int = 3
    max_words: int = 40
    passage_max_words: int = 120
    max_per_source: int | None = None  # read at most this many candidates per source (micro)


@dataclass(frozen=True)
class CorpusPreset:
    name: str
    speech: SpeechPreset
    music: MusicPreset
    images: ImagePreset
    text: TextPreset
    seed: int = 0

    def with_seed(self, seed: int) -> "CorpusPreset":
        return replace(self, seed=seed)


CORPUS_PRESETS: dict[str, CorpusPreset] = {
    "micro": CorpusPreset(
        "micro",
        SpeechPreset(2, 1, 1, 1, 2,
                     train_voices=(Voice("flite", "kal"), Voice("flite", "slt"), Voice("espeak", "en-us+f3"),
                                   Voice("flite", "kal", pitch=3.0, tempo=1.1)),
                     heldout_voices=(Voice("flite", "awb"), Voice("espeak", "en-us+m3", pitch=-2.0))),
        MusicPreset(5, 2, heldout_piece_fraction=0.4, clip_seconds=3.0),
        ImagePreset(12, 6, 12, 24, 8),
        TextPreset(300, 20, max_per_source=3000),
    ),
    "tiny": CorpusPreset(
        "tiny",
        SpeechPreset(150, 8, 8, 10, 60),
        MusicPreset(150, 3, clip_seconds=8.0),
        ImagePreset(600, 400, 600, 3000, 400),
        TextPreset(30000, 300),
    ),
    "small": CorpusPreset(
        "small",
        SpeechPreset(1500, 60, 60, 80, 600),
        MusicPreset(1500, 3, clip_seconds=8.0),
        ImagePreset(-1, -1, -1, 36000, 4000),
        TextPreset(300000, 3000),
    ),
}


def get_corpus_preset(name: str, seed: int = 0) -> CorpusPreset:
    if name not in CORPUS_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(CORPUS_PRESETS)}")
    return CORPUS_PRESETS[name].with_seed(seed)
