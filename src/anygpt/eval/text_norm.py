"""Text normalisation applied to reference and hypothesis before WER/CER.

Lower-case, expand contractions and a few abbreviations, spell numbers as words (cardinals,
ordinals, decimals, percent, currency), drop punctuation, collapse whitespace. Both sides go
through the same function, so a transcript that writes "42" and a reference that writes
"forty two" agree.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}

CONTRACTIONS = {
    "won't": "will not", "can't": "cannot", "shan't": "shall not", "ain't": "is not",
    "let's": "let us", "y'all": "you all", "o'clock": "of the clock",
}
_SUFFIX_CONTRACTIONS = [("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"),
                        ("'m", " am"), ("'d", " would")]
# "'s" is ambiguous (is / has / possessive): it is kept as part of the word, on both sides.
ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "vs": "versus", "etc": "et cetera"}


def number_to_words(n: int) -> str:
    """Cardinal in words: 42 -> 'forty two', 1905 -> 'one thousand nine hundred five'."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return number_to_words(high) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def ordinal_to_words(n: int) -> str:
    """21 -> 'twenty first', 12 -> 'twelfth', 100 -> 'one hundredth'."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _digits_to_words(s: str) -> str:
    """'3.14' -> 'three point one four'; '1,000' -> 'one thousand'."""
    s = s.replace(",", "")
    if "." in s:
        whole, frac = s.split(".", 1)
        head = number_to_words(int(whole)) if whole else "zero"
        return head + " point " + " ".join(_ONES[int(d)] for d in frac if d.isdigit())
    return number_to_words(int(s))


_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"


def _expand_numbers(text: str) -> str:
    text = re.sub(rf"\$({_NUM})", lambda m: _digits_to_words(m.group(1)) + " dollars", text)
    text = re.sub(rf"£({_NUM})", lambda m: _digits_to_words(m.group(1)) + " pounds", text)
    text = re.sub(rf"({_NUM})\s*%", lambda m: _digits_to_words(m.group(1)) + " percent", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal_to_words(int(m.group(1))), text)
    text = re.sub(_NUM, lambda m: " " + _digits_to_words(m.group(0)) + " ", text)
    return text


def normalize_text(text: str) -> str:
    """Normalise a transcript for WER: 'Mr. Smith won't pay $5!' -> 'mister smith will not pay five dollars'."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for k, v in CONTRACTIONS.items():
        text = re.sub(rf"\b{re.escape(k)}\b", v, text)
    for suffix, full in _SUFFIX_CONTRACTIONS:
        text = re.sub(rf"(\w){re.escape(suffix)}\b", rf"\1{full}", text)
    text = _expand_numbers(text)
    text = re.sub(r"\b(" + "|".join(ABBREVIATIONS) + r")\b\.?", lambda m: ABBREVIATIONS[m.group(1)], text)
    text = text.replace("&", " and ")
    text = re.sub(r"[-_/]", " ", text)  # hyphenated words count as separate words
    text = re.sub(r"'s\b", "s", text)  # possessive / is: keep one token, same on both sides
    text = re.sub(r"[^\w\s]", "", text)
    return re.sub(r"\s+", " ", text).strip()
