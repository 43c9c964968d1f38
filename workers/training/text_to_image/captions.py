"""Captions for the digits: the text side of the (image, caption) pairs.

Every training digit gets a fresh random caption at every step: a template filled with the digit
as a numeral ``{n}`` or an English word ``{w}``, sometimes with filler words inserted around it, so
that the text encoder has to find the one token that matters wherever it sits. A fraction of the
captions are dropped to the empty prompt "", which trains the unconditional branch that
classifier-free guidance (Ho & Salimans 2022) needs, as Stable Diffusion does.
"""

from __future__ import annotations

import random
import string

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

TEMPLATES = (
    "{n}",
    "{w}",
    "the digit {n}",
    "the digit {w}",
    "a handwritten {w}",
    "a handwritten {n}",
    "number {w}",
    "the number {n}",
    "the number {w}",
    "an image of a {w}",
    "an image of the digit {n}",
    "digit {w}",
    "digit {n}",
    "a {w}",
    "a {n}",
    "written {w}",
    "a drawing of the digit {w}",
    "a photo of a handwritten {n}",
    "the numeral {n}",
    "{w} drawn by hand",
    "draw a {w}",
    "write the number {n}",
)

# Words that may appear in a caption without changing the digit. None of them is a number word
# ("one" in "a one" is the digit, so it cannot double as filler).
FILLER_WORDS = (
    "a", "an", "the", "of", "digit", "number", "numeral", "handwritten", "written", "image",
    "picture", "drawing", "photo", "sketch", "please", "draw", "write", "show", "me", "black",
    "white", "small", "big", "thin", "bold", "neat", "messy", "simple", "single", "mnist", "style",
    "ink", "on", "with", "background", "hand", "by", "clear", "centered", "grey", "pencil", "drawn",
    "nice", "little", "large", "is", "this", "here", "in",
)  # fmt: skip

# Mixed into a few captions as filler so that the character tokens (which every word outside the
# vocabulary falls back to) are trained as noise the encoder learns to ignore, not left random.
GIBBERISH_ALPHABET = string.ascii_lowercase


def caption_words() -> list[str]:
    """Every whole word a caption can contain: the tokenizer gets one token for each."""
    words = set(NUMBER_WORDS) | set(FILLER_WORDS)
    for template in TEMPLATES:
        words.update(w for w in template.split() if not w.startswith("{"))
    return sorted(words)


def digit_caption(label: int, template: str) -> str:
    """``template`` with ``{n}`` -> the numeral and ``{w}`` -> the English word of ``label``."""
    return template.format(n=str(label), w=NUMBER_WORDS[label])


def _gibberish(rng: random.Random) -> str:
    return "".join(rng.choice(GIBBERISH_ALPHABET) for _ in range(rng.randint(2, 8)))


def random_caption(
    label: int, rng: random.Random, dropout: float = 0.15, filler_probability: float = 0.4
) -> str:
    """One training caption for a digit of class ``label``.

    Args:
        dropout: probability of the empty prompt "" (the unconditional branch).
        filler_probability: probability that one to three filler words are inserted at random
            positions (one in ten of them is a made-up word of random letters).
    """
    if rng.random() < dropout:
        return ""
    words = digit_caption(label, rng.choice(TEMPLATES)).split()
    if rng.random() < filler_probability:
        for _ in range(rng.randint(1, 3)):
            filler = _gibberish(rng) if rng.random() < 0.1 else rng.choice(FILLER_WORDS)
            words.insert(rng.randint(0, len(words)), filler)
    return " ".join(words)
