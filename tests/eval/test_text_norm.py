import pytest

from anygpt.eval.text_norm import normalize_text, number_to_words, ordinal_to_words


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (42, "forty two"), (100, "one hundred"),
    (105, "one hundred five"), (1905, "one thousand nine hundred five"), (2000000, "two million"),
    (1234567, "one million two hundred thirty four thousand five hundred sixty seven"), (-3, "minus three"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (12, "twelfth"),
                                      (20, "twentieth"), (21, "twenty first"), (100, "one hundredth")])
def test_ordinals(n, words):
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize("text, norm", [
    ("Hello,   World!", "hello world"),
    ("Mr. Smith won't pay $5.", "mister smith will not pay five dollars"),
    ("I'd say we're done; they've left.", "i would say we are done they have left"),
    ("It's 3.14 on the 21st.", "its three point one four on the twenty first"),
    ("1,000 people & 50% of them", "one thousand people and fifty percent of them"),
    ("A well-known \u201cquote\u201d", "a well known quote"),
    ("Can't stop", "cannot stop"),
])
def test_normalize_text(text, norm):
    assert normalize_text(text) == norm


def test_digits_and_words_agree():
    assert normalize_text("He is 42 years old") == normalize_text("he is forty-two years old.")
