"""The text-to-image model's text side and folder layout, without training: the generated CLIP
tokenizer files, the captions, and an exported pipeline loaded back by diffusers."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTokenizer

from workers.training.text_to_image.captions import (
    FILLER_WORDS,
    NUMBER_WORDS,
    caption_words,
    random_caption,
)
from workers.training.text_to_image.components import MAX_TOKENS, build_vae
from workers.training.text_to_image.export import export_pipeline
from workers.training.text_to_image.tokenizer_files import END_OF_WORD, write_tokenizer
from workers.training.text_to_image.train import DiffusionConfig, DiffusionState, build_models, tokenize


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def bpe_only(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CLIPTokenizer:
    """The tokenizer rebuilt from vocab.json + merges.txt alone (no tokenizer.json)."""
    folder = tmp_path_factory.mktemp("bpe_only")
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(tokenizer_dir / name, folder / name)
    return CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)


def test_caption_words_are_whole_tokens(bpe_only: CLIPTokenizer) -> None:
    ids = bpe_only("a handwritten seven").input_ids
    assert bpe_only.convert_ids_to_tokens(ids) == [
        "<|startoftext|>",
        "a" + END_OF_WORD,
        "handwritten" + END_OF_WORD,
        "seven" + END_OF_WORD,
        "<|endoftext|>",
    ]
    for word in [*caption_words(), *(str(d) for d in range(10))]:
        assert bpe_only.tokenize(word) == [word + END_OF_WORD], word


def test_unknown_words_fall_back_to_pieces_and_round_trip(bpe_only: CLIPTokenizer) -> None:
    pieces = bpe_only.tokenize("xylophone")
    assert len(pieces) > 1 and bpe_only.unk_token not in pieces
    text = "the digit 7 drawn by a xylophone"
    assert bpe_only.decode(bpe_only(text).input_ids, skip_special_tokens=True) == text


def test_saved_tokenizer_matches_the_bpe_files(tokenizer_dir: Path, bpe_only: CLIPTokenizer) -> None:
    saved = CLIPTokenizer.from_pretrained(tokenizer_dir)
    assert saved.model_max_length == MAX_TOKENS
    captions = ["", "7", "the number seven", "please draw a scribbled 3 qzx"]
    assert torch.equal(tokenize(saved, captions), tokenize(bpe_only, captions))
    assert tokenize(saved, captions).shape == (4, MAX_TOKENS)


def test_captions_name_the_digit_or_are_empty() -> None:
    rng = random.Random(0)
    labels = [rng.randrange(10) for _ in range(2000)]
    captions = [random_caption(label, rng, dropout=0.15) for label in labels]
    assert 0.12 < np.mean([c == "" for c in captions]) < 0.18
    for label, caption in zip(labels, captions, strict=True):
        words = caption.split()
        assert caption == "" or str(label) in words or NUMBER_WORDS[label] in words, caption
        other_digits = {str(d) for d in range(10)} | set(NUMBER_WORDS)
        other_digits -= {str(label), NUMBER_WORDS[label]}
        assert not other_digits & set(words), caption
    assert not set(FILLER_WORDS) & set(NUMBER_WORDS)


def test_captions_are_reproducible() -> None:
    assert [random_caption(3, random.Random(7)) for _ in range(5)] == [
        random_caption(3, random.Random(7)) for _ in range(5)
    ]


def test_exported_folder_loads_as_stable_diffusion(tmp_path: Path, tokenizer_dir: Path) -> None:
    run_dir = tmp_path / "run"
    tokenizer = write_tokenizer(run_dir / "tokenizer")
    build_vae(scaling_factor=0.5).save_pretrained(run_dir / "vae")
    models = build_models(tokenizer, ema_decay=0.999)
    out = tmp_path / "model"
    export_pipeline(run_dir, out, models, DiffusionState(), DiffusionConfig(), tokenizer, {})
    assert (out / "tokenizer" / "vocab.json").exists() and (out / "tokenizer" / "merges.txt").exists()

    pipeline = StableDiffusionPipeline.from_pretrained(out, safety_checker=None, local_files_only=True)
    assert pipeline.vae.config.scaling_factor == 0.5
    assert pipeline.scheduler.config.beta_schedule == "scaled_linear"
    images = pipeline(
        ["a handwritten seven"],
        num_inference_steps=2,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert images.shape == (1, 32, 32, 1) and np.isfinite(images).all()
