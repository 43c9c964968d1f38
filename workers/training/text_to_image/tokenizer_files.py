"""The files of a CLIP tokenizer for the caption vocabulary: ``vocab.json`` and ``merges.txt``.

CLIP's tokenizer (Radford et al. 2021) is byte-level BPE (Sennrich et al. 2016): a word is split
into byte-characters, the last one marked with ``</w>``, and the learned merges are applied in
rank order. The vocabulary here is laid out as CLIP's: the 256 byte-characters, the same 256 with
``</w>``, one entry per merge, then ``<|startoftext|>`` and ``<|endoftext|>``. The merges are
learned on the caption words only, so every caption word becomes one token and any other word still
tokenizes, into smaller pieces down to single characters.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

from workers.training.text_to_image.captions import caption_words
from workers.training.text_to_image.components import MAX_TOKENS

END_OF_WORD = "</w>"
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"


def byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the 256 byte values, in CLIP's order."""
    # GPT-2's bytes_to_unicode lists the printable Latin-1 bytes (which stand for themselves) first,
    # then the other 68 bytes, which it maps to U+0100 onwards in byte order: sorting by code point
    # gives the same order
    return sorted(ByteLevel.alphabet())


def _symbols(word: str) -> tuple[str, ...]:
    return (*word[:-1], word[-1] + END_OF_WORD)


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE training on ``words`` (each counted once) until every word is a single symbol.

    Each round merges the most frequent adjacent pair (ties broken alphabetically so the files are
    reproducible). Encoding applies the merges in this order, so it ends with the same whole-word
    symbols training did.
    """
    split = [_symbols(w) for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for symbols in split for pair in pairwise(symbols))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        split = [_merge(symbols, best) for symbols in split]


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


def vocabulary(merges: list[tuple[str, str]]) -> dict[str, int]:
    alphabet = byte_alphabet()
    tokens = alphabet + [ch + END_OF_WORD for ch in alphabet] + [a + b for a, b in merges]
    tokens += [START_OF_TEXT, END_OF_TEXT]
    return {token: index for index, token in enumerate(tokens)}


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """Writes ``vocab.json`` + ``merges.txt`` (and the tokenizer config) to ``folder``; returns the
    ``CLIPTokenizer`` loaded back from there, padded to ``MAX_TOKENS`` as the pipeline will use it."""
    folder.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(caption_words())
    (folder / "vocab.json").write_text(json.dumps(vocabulary(merges), ensure_ascii=False) + "\n")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(folder)
    return CLIPTokenizer.from_pretrained(folder)
