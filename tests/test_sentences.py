"""The Brown-corpus reader and the phrase sampler (text_recognizer.data.sentences)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from text_recognizer.data.sentences import (
    BrownCorpusError,
    clean_sentences,
    load_brown_text,
    read_brown_sentences,
    sample_phrases,
)
from text_recognizer.metadata import LINE_CHARSET

REAL_BROWN = Path(__file__).resolve().parents[1].parent / "shared/datasets/nltk_data/corpora/brown.zip"

# Two files of tagged sentences in Brown's format: tab-indented lines, `word/tag`, blank lines between.
TINY_FILES = {
    "ca01": [
        "The/at-tl Fulton/np-tl jury/nn said/vbd ``/`` it's/pps+bez term-end/nn ''/'' ./.",
        "It/pps cost/vbd $4,000/nns in/in 1961/cd ;/. really/rb !/.",
    ],
    "cb01": ["--/-- Hello/uh ,/, World/nn-tl ?/."],
}
TINY_TEXT = "The Fulton jury said its termend It cost 4000 in 1961 really Hello World"


def write_brown_zip(path: Path, files: dict[str, list[str]]) -> Path:
    """A minimal brown.zip: folder brown/, cats.txt and one file per fileid."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("brown/", b"")
        archive.writestr("brown/cats.txt", "".join(f"{fid} news\n" for fid in files))
        archive.writestr("brown/README", "tiny test corpus\n")
        for fid, sentences in files.items():
            archive.writestr(f"brown/{fid}", "".join(f"\n\n\t{s}\n" for s in sentences))
    return path


def test_clean_sentences_drops_punctuation_and_strips_symbols():
    sentences = [["``", "It's", "a", "well-known", "fact", ",", "''", "he", "said", "."], ["$5", "--", "only", "!"]]
    assert clean_sentences(sentences) == "Its a wellknown fact he said 5 only"
    assert clean_sentences([[".", ","], []]) == ""


def test_load_brown_text_reads_through_nltk_without_side_effects(tmp_path, monkeypatch):
    import nltk
    import nltk.data

    def no_download(*args, **kwargs):
        raise AssertionError("nltk.download must not be called")

    monkeypatch.setattr(nltk, "download", no_download)
    before = list(nltk.data.path)
    zip_path = write_brown_zip(tmp_path / "brown.zip", TINY_FILES)
    sentences = read_brown_sentences(zip_path)
    assert len(sentences) == 3
    assert sentences[0][:3] == ["The", "Fulton", "jury"]
    assert load_brown_text(zip_path) == TINY_TEXT
    assert nltk.data.path == before


def test_load_brown_text_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_brown"):
        load_brown_text(tmp_path / "missing.zip")
    not_zip = tmp_path / "brown.zip"
    not_zip.write_text("<html>not found</html>")
    with pytest.raises(BrownCorpusError, match="not a zip"):
        load_brown_text(not_zip)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("words/ca01", "\tThe/at jury/nn\n")
    with pytest.raises(ValueError, match=r"not NLTK's brown\.zip"):
        load_brown_text(other)
    only_punct = write_brown_zip(tmp_path / "punct.zip", {"ca01": ["./. ,/,"]})
    with pytest.raises(BrownCorpusError, match="no letters or digits"):
        load_brown_text(only_punct)


def check_phrases(phrases: list[str], text: str, max_length: int) -> None:
    """Each phrase: 1..max_length characters of LINE_CHARSET, a run of whole words of `text`."""
    padded = f" {text} "
    long_words = [w for w in text.split() if len(w) > max_length]
    for phrase in phrases:
        assert 1 <= len(phrase) <= max_length
        assert phrase == phrase.strip() and "  " not in phrase
        assert set(phrase) <= LINE_CHARSET
        if f" {phrase} " not in padded:
            # Only allowed case: one word longer than max_length, cut to max_length.
            assert len(phrase) == max_length and any(w.startswith(phrase) for w in long_words), phrase


def test_sample_phrases_constraints():
    text = "a bb ccc Supercalifragilistic dddd 12345 e ff ggg Hhhh iiiii"
    phrases = sample_phrases(text, 2000, 10, np.random.default_rng(0))
    assert len(phrases) == 2000
    check_phrases(phrases, text, 10)
    lengths = np.array([len(p) for p in phrases])
    assert lengths.min() == 1 and lengths.max() == 10  # "a" alone, and a cut long word or a 10-char run
    assert "Supercalif" in phrases  # the 20-letter word, cut
    assert len(set(phrases)) > 20
    assert sample_phrases(text, 0, 10, np.random.default_rng(0)) == []


def test_sample_phrases_deterministic():
    text = " ".join(f"w{i}" for i in range(500))
    a = sample_phrases(text, 50, 16, np.random.default_rng(7))
    assert a == sample_phrases(text, 50, 16, np.random.default_rng(7))
    assert a != sample_phrases(text, 50, 16, np.random.default_rng(8))


def test_sample_phrases_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="max_length"):
        sample_phrases("a b", 3, 0, rng)
    with pytest.raises(ValueError, match="n must"):
        sample_phrases("a b", -1, 5, rng)
    with pytest.raises(ValueError, match="no words"):
        sample_phrases("   ", 3, 5, rng)


@pytest.fixture(scope="module")
def real_sentences():
    if not REAL_BROWN.is_file():
        pytest.skip(f"real Brown corpus not present at {REAL_BROWN}")
    return read_brown_sentences(REAL_BROWN)


def test_real_brown_corpus(real_sentences):
    assert len(real_sentences) == 57_340
    assert " ".join(real_sentences[0]).startswith("The Fulton County Grand Jury said Friday")
    text = clean_sentences(real_sentences)
    assert text.startswith("The Fulton County Grand Jury said Friday an investigation of Atlantas recent primary")
    assert set(text) == LINE_CHARSET  # every digit, letter and the space occur
    phrases = sample_phrases(text, 500, 32, np.random.default_rng(0))
    check_phrases(phrases, text, 32)
    assert 10 < np.mean([len(p) for p in phrases]) < 20
