import pytest
import torch

from anygpt.errors import LayoutError, ModelOutputError, UnknownModalityError
from anygpt.layout import TokenLayout, added_tokens
from anygpt.modalities import released_specs
from anygpt.parts import CodesPart, TextPart
from anygpt.token_spec import TokenSpec

BASE = 32000


@pytest.fixture(scope="module")
def layout():
    return TokenLayout.plan(BASE, released_specs())


def test_released_id_plan(layout):
    # [Human] [MMGPT] <eoh> <eos>, image 8192 + 2 markers, speech 1024 + 2, music 8192 + 2, <-Res-> <-Ins->
    assert layout.special_ids == {"[Human]": 32000, "[MMGPT]": 32001, "<eoh>": 32002, "<eos>": 32003,
                                  "<-Res->": 49418, "<-Ins->": 49419}
    im, sp, mu = layout["image"], layout["speech"], layout["music"]
    assert (im.code_offset, im.start_id, im.end_id) == (32004, 40196, 40197)
    assert (sp.code_offset, sp.start_id, sp.end_id) == (40198, 41222, 41223)
    assert (mu.code_offset, mu.start_id, mu.end_id) == (41224, 49416, 49417)
    assert layout.vocab_size == 49420
    assert added_tokens(released_specs())[4:6] == ["<\U0001F4400>", "<\U0001F4401>"]


def test_token_strings_are_byte_exact(layout):
    assert layout.codes_to_text("speech", torch.tensor([[7]])).encode("utf-8") == (
        b"<sosp><\xf0\x9f\x97\xa3\xef\xb8\x8f7><eosp>")  # U+1F5E3 U+FE0F
    assert layout.codes_to_text("image", torch.arange(32)[None]).startswith("<soim><\U0001F4400><\U0001F4401>")
    assert layout["music"].spec.code_token(8191) == "<\U0001F3B68191>"


def test_music_is_written_frame_by_frame_with_layer_offsets(layout):
    codes = torch.tensor([[1, 32, 23], [0, 32, 23], [0, 32, 23], [0, 32, 23]])
    text = layout.codes_to_text("music", codes)
    written = [1, 2048, 4096, 6144, 32, 2080, 4128, 6176, 23, 2071, 4119, 6167]
    assert text == "<somu>" + "".join(f"<\U0001F3B6{i}>" for i in written) + "<eomu>"
    ids = layout.codes_to_ids("music", codes)
    assert ids.tolist() == [41224 + i for i in written]
    # the release's decoding: id mod 2048, whole frames, reshape (frames, 4), transpose
    back = (torch.tensor(written) % 2048).reshape(-1, 4).t()
    assert torch.equal(back, codes)
    assert torch.equal(layout.ids_to_codes("music", ids), codes)


@pytest.mark.parametrize("modality,k,c,t", [("image", 1, 8192, 32), ("speech", 1, 1024, 77), ("music", 4, 2048, 25)])
def test_round_trips(layout, modality, k, c, t):
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, c, (k, t), generator=g)
    ids = layout.codes_to_ids(modality, codes)
    assert ids.shape == (k * t,)
    assert torch.equal(layout.ids_to_codes(modality, ids), codes)
    text = layout.codes_to_text(modality, codes)
    assert torch.equal(layout.text_to_codes(modality, text), codes)
    seg = layout.segment_ids(modality, codes)
    assert seg[0] == layout[modality].start_id and seg[-1] == layout[modality].end_id


def test_compact_specs_get_their_own_layout():
    specs = [TokenSpec("image", "\U0001F440", "<soim>", "<eoim>", 256, 1, 16),
             TokenSpec("music", "\U0001F3B6", "<somu>", "<eomu>", 64, 3)]
    lay = TokenLayout.plan(500, specs, chat=False)
    assert lay["image"].code_offset == 504 and lay["image"].end_id == 504 + 256 + 1
    assert lay["music"].code_offset == 504 + 258 and lay.vocab_size == 504 + 258 + 192 + 2
    codes = torch.tensor([[1, 2], [3, 4], [5, 6]])
    assert (layout_ids := lay.codes_to_ids("music", codes) - lay["music"].code_offset).tolist() == [1, 67, 133, 2, 68, 134]
    assert torch.equal(lay.ids_to_codes("music", layout_ids + lay["music"].code_offset), codes)


def test_bad_codes_and_ids_raise(layout):
    with pytest.raises(LayoutError, match="out of range"):
        layout.codes_to_ids("speech", torch.tensor([[1024]]))
    with pytest.raises(LayoutError, match="exactly 32"):
        layout.codes_to_ids("image", torch.zeros(1, 31, dtype=torch.long))
    with pytest.raises(LayoutError, match=r"shape \[4, T\]"):
        layout.codes_to_ids("music", torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(UnknownModalityError, match="video"):
        layout.codes_to_ids("video", torch.zeros(1, 5, dtype=torch.long))
    m = layout["music"].code_offset
    with pytest.raises(LayoutError, match="whole number"):
        layout.ids_to_codes("music", torch.tensor([m, m + 2048, m + 4096]))
    with pytest.raises(LayoutError, match="codebooks must cycle"):
        layout.ids_to_codes("music", torch.tensor([m, m + 4096, m + 2048, m + 6144]))
    with pytest.raises(LayoutError, match="not a speech code"):
        layout.ids_to_codes("speech", torch.tensor([5]))


def test_parse_text_orders_parts(layout):
    img = torch.arange(32)[None]
    sp = torch.tensor([[5, 6, 7]])
    text = "Look: " + layout.codes_to_text("image", img) + " and hear " + layout.codes_to_text("speech", sp) + "."
    parts = layout.parse_text(text)
    assert parts == [TextPart("Look: "), CodesPart("image", img), TextPart(" and hear "), CodesPart("speech", sp), TextPart(".")]


@pytest.mark.parametrize("bad,match", [
    ("<sosp><\U0001F5E3\uFE0F1><\U0001F5E3\uFE0F2>", "truncated"),
    ("hello <\U0001F5E3\uFE0F1> world", "stray"),
    ("<eosp>", "stray"),
    ("<soim>" + "<\U0001F4401>" * 31 + "<eoim>", "expected exactly 32"),
    ("<somu><\U0001F3B61><\U0001F3B62049><eomu>", "whole number"),
    ("<sosp><\U0001F5E3\uFE0F1025><eosp>", "out of range"),
    ("<sosp><\U0001F5E3\uFE0F1>oops<eosp>", "inside a speech segment"),
    ("<sosp><\U0001F5E3\uFE0F1><somu>", "inside a speech segment"),
])
def test_strict_parse_names_the_problem(layout, bad, match):
    with pytest.raises(ModelOutputError, match=match):
        layout.parse_text(bad, strict=True)


def test_lenient_parse_repairs_like_the_release(layout):
    # truncated music with a partial frame: whole frames kept, codes taken mod 2048
    text = "x <somu>" + "".join(f"<\U0001F3B6{i}>" for i in [1, 2049, 4097, 6145, 9]) + " tail"
    parts = layout.parse_text(text, strict=False)
    assert parts[0] == TextPart("x ")
    music = parts[1]
    assert isinstance(music, CodesPart) and music.repaired
    assert music.codes.tolist() == [[1], [1], [1], [1]]
    short_image = layout.parse_text("<soim>" + "<\U0001F4403>" * 5 + "<eoim>", strict=False)[0]
    assert short_image.codes.shape == (1, 5) and "expected exactly 32" in short_image.repaired


def test_from_tokenizer_checks_contiguity():
    from anygpt.lm.text_tokenizer import train_text_tokenizer

    spec = TokenSpec("speech", "\U0001F5E3\uFE0F", "<sosp>", "<eosp>", 8)
    tok = train_text_tokenizer(["some text to learn from"] * 3, vocab_size=300)
    with pytest.raises(LayoutError, match="not expanded"):
        TokenLayout.from_tokenizer(tok, [spec])
    codes = spec.code_tokens()
    tok.add_tokens(codes[:4] + ["<other>"] + codes[4:] + [spec.start, spec.end])
    with pytest.raises(LayoutError, match="not contiguous"):
        TokenLayout.from_tokenizer(tok, [spec])


def test_data_file_errors_name_file_and_line(layout, tmp_path):
    from anygpt.sequence_files import read_sequences

    good = layout.codes_to_text("speech", torch.tensor([[1, 2, 3]]))
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"text": "say ' + good + '"}\n\n{"text": "cut <sosp><\U0001F5E3\uFE0F1>"}\n', encoding="utf-8")
    it = read_sequences(f, layout)
    n, parts = next(it)
    assert n == 1 and parts[1] == CodesPart("speech", torch.tensor([[1, 2, 3]]))
    with pytest.raises(LayoutError, match=r"pairs.jsonl:3: speech segment has no <eosp> \(truncated\)"):
        next(it)
    plain = tmp_path / "seq.txt"
    plain.write_text("{bad json}\n", encoding="utf-8")
    assert next(read_sequences(plain, layout))[1] == [TextPart("{bad json}")]
    bad_json = tmp_path / "b.jsonl"
    bad_json.write_text("{bad json}\n", encoding="utf-8")
    with pytest.raises(LayoutError, match=r"b.jsonl:1: not valid JSON .*expected one JSON object per line"):
        list(read_sequences(bad_json, layout))
