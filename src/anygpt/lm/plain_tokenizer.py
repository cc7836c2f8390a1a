"""A model folder's fast text tokenizer (tokenizer.json) read with the `tokenizers` library
alone, without importing transformers (about 5 s of a cold start on this machine, see
benchmarks/bench_cold_start.py).

    tok = PlainTokenizer.from_folder(folder)      # None when the folder needs transformers
    tok("a red circle", add_special_tokens=False)["input_ids"]

It answers the part of PreTrainedTokenizerFast's interface that anygpt's generation path uses
(encoding, decoding, the vocabulary, the special ids) with the same results: a test compares
both on the shipped model. Anything else (training, save_pretrained of a changed vocabulary)
loads the HF tokenizer from the same folder (`to_hf`).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from anygpt.errors import CheckpointError
from anygpt.lm.hf_folder import load_text_tokenizer_hf, read_json

SPECIAL_NAMES = ("bos", "eos", "unk", "pad")


class PlainTokenizer:
    """backend: tokenizers.Tokenizer; specials: "bos"/"eos"/"unk"/"pad" -> token string or None;
    folder: where its files are (for to_hf and save_pretrained)."""

    padding_side = "left"

    def __init__(self, backend: Tokenizer, specials: dict[str, str | None], folder: Path):
        self.backend = backend
        self.folder = folder
        self._ids = {name: None if specials.get(name) is None else backend.token_to_id(specials[name])
                     for name in SPECIAL_NAMES}
        if self._ids["pad"] is None:
            self._ids["pad"] = 0  # as anygpt.lm.checkpoint.load_lm sets for the HF tokenizer

    @classmethod
    def from_folder(cls, folder: str | Path) -> "PlainTokenizer | None":
        """-> the tokenizer of a folder holding tokenizer.json written by PreTrainedTokenizerFast
        (our folders), or None when only transformers can reproduce it (a slow or custom class,
        or decoding that cleans up spaces)."""
        folder = Path(folder)
        config = _read_json(folder / "tokenizer_config.json")
        if not (folder / "tokenizer.json").is_file() or config is None \
                or config.get("tokenizer_class", "PreTrainedTokenizerFast") != "PreTrainedTokenizerFast" \
                or config.get("clean_up_tokenization_spaces", False):
            return None
        specials_map = _read_json(folder / "special_tokens_map.json") or {}
        specials = {}
        for name in SPECIAL_NAMES:
            value = specials_map.get(f"{name}_token", config.get(f"{name}_token"))
            specials[name] = value.get("content") if isinstance(value, dict) else value
        try:
            backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises its own Exception types
            raise CheckpointError(f"{folder / 'tokenizer.json'}: not valid JSON or not a tokenizer ({str(e)[:200]}); "
                                  "the model folder is damaged") from None
        return cls(backend, specials, folder)

    # ----------------------------------------------------------------- PreTrainedTokenizerFast's answers
    def __call__(self, text: str, *, add_special_tokens: bool = False, split_special_tokens: bool = False) -> dict:
        """-> {"input_ids": [int]}; split_special_tokens: added-token strings are encoded as
        their characters."""
        self.backend.encode_special_tokens = split_special_tokens
        try:
            return {"input_ids": self.backend.encode(text, add_special_tokens=add_special_tokens).ids}
        finally:
            self.backend.encode_special_tokens = False

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        found = self.backend.token_to_id(token)
        return self.unk_token_id if found is None else found

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: i for i, t in self.backend.get_added_tokens_decoder().items()}

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def bos_token_id(self) -> int | None:
        return self._ids["bos"]

    @property
    def eos_token_id(self) -> int | None:
        return self._ids["eos"]

    @property
    def unk_token_id(self) -> int | None:
        return self._ids["unk"]

    @property
    def pad_token_id(self) -> int:
        return self._ids["pad"]

    # ----------------------------------------------------------------- the rest: transformers
    def to_hf(self):
        """-> the same folder's PreTrainedTokenizerFast (imports transformers)."""
        return load_text_tokenizer_hf(self.folder)

    def save_pretrained(self, path: str | Path):
        return self.to_hf().save_pretrained(path)


def _read_json(file: Path) -> dict | None:
    """A folder's JSON file -> dict, or None when it is absent (a damaged one: CheckpointError)."""
    if not file.is_file():
        return None
    return read_json(file)
