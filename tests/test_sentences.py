"""The Brown-corpus reader and the phrase sampler (text_recognizer.data.sentences)."""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from text_recognizer.data.sentences import (
    TEXT_POOLS,
    BrownCorpusError,
    TextPools,
    brown_category,
    clean_sentences,
    load_brown_text,
    load_text_pools,
    read_brown_documents,
    read_brown_sentences,
    sample_phrases,
    split_documents,
    write_pool_text,
)
from text_recognizer.data.synthetic import brown_fileids, write_brown_corpus
from text_recognizer.errors import InputError, MissingInputError
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
    with pytest.raises(FileNotFoundError, match="download_brown") as err:
        load_brown_text(tmp_path / "missing.zip")
    assert isinstance(err.value, MissingInputError)  # the stages report it in one line
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
    assert issubclass(BrownCorpusError, InputError)


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
def real_documents() -> dict[str, list[list[str]]]:
    if not REAL_BROWN.is_file():
        pytest.skip(f"real Brown corpus not present at {REAL_BROWN}")
    return read_brown_documents(REAL_BROWN)


@pytest.fixture(scope="module")
def real_sentences(real_documents):
    return [sentence for sentences in real_documents.values() for sentence in sentences]


def test_real_brown_corpus(real_sentences):
    assert len(real_sentences) == 57_340
    assert " ".join(real_sentences[0]).startswith("The Fulton County Grand Jury said Friday")
    text = clean_sentences(real_sentences)
    assert text.startswith("The Fulton County Grand Jury said Friday an investigation of Atlantas recent primary")
    assert set(text) == LINE_CHARSET  # every digit, letter and the space occur
    phrases = sample_phrases(text, 500, 32, np.random.default_rng(0))
    check_phrases(phrases, text, 32)
    assert 10 < np.mean([len(p) for p in phrases]) < 20


# --- text pools: each split's own documents ----------------------------------------------------

FILEIDS = [fileid for fileid, _ in brown_fileids()]  # the real corpus's 500 file ids, ca01 ... cr09
FRACTIONS = {"val_fraction": 0.1, "test_fraction": 0.1}


def genre_counts(fileids) -> Counter:
    return Counter(brown_category(f) for f in fileids)


def check_pools(pools: dict[str, tuple[str, ...]], fileids: list[str], shares: dict[str, float]) -> None:
    """Disjoint, covering, each pool its share of every genre to within whole documents."""
    assigned = [f for split in TEXT_POOLS for f in pools[split]]
    assert len(assigned) == len(set(assigned)), "a document is in two pools"
    assert sorted(assigned) == sorted(fileids)
    total = genre_counts(fileids)
    for split, share in shares.items():
        assert len(pools[split]) == round(share * len(fileids)), split
        counts = genre_counts(pools[split])
        slack = 2 if split == "train" else 1  # train gets what val and test (each within 1) leave
        for genre, n in total.items():
            assert abs(counts[genre] - share * n) < slack, (split, genre, counts[genre], n)
        assert list(pools[split]) == sorted(pools[split])


def test_split_documents_disjoint_stratified_and_seeded():
    pools = split_documents(FILEIDS, **FRACTIONS, seed=0)
    check_pools(pools, FILEIDS, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert {g for g in genre_counts(pools["test"])} >= set("abcdefghjklnp")  # nearly every genre is tested
    assert split_documents(reversed(FILEIDS), **FRACTIONS, seed=0) == pools  # the input order does not matter
    other = split_documents(FILEIDS, **FRACTIONS, seed=1)
    check_pools(other, FILEIDS, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert other["test"] != pools["test"] and other["val"] != pools["val"]
    uneven = split_documents(FILEIDS, val_fraction=0.05, test_fraction=0.25, seed=3)
    check_pools(uneven, FILEIDS, {"train": 0.7, "val": 0.05, "test": 0.25})
    small = [f for f, _ in brown_fileids(40)]
    check_pools(split_documents(small, **FRACTIONS, seed=0), small, {"val": 0.1, "test": 0.1})
    none = split_documents(FILEIDS, val_fraction=0.0, test_fraction=0.0, seed=0)
    assert none["train"] == tuple(FILEIDS) and none["val"] == none["test"] == ()


def test_split_documents_rejects_bad_arguments():
    with pytest.raises(ValueError, match="val \\+ test < 1"):
        split_documents(FILEIDS, val_fraction=0.5, test_fraction=0.5, seed=0)
    with pytest.raises(ValueError, match="val \\+ test < 1"):
        split_documents(FILEIDS, val_fraction=-0.1, test_fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        split_documents(FILEIDS, **FRACTIONS, seed=-1)
    with pytest.raises(ValueError, match="unique"):
        split_documents(["ca01", "ca01"], **FRACTIONS, seed=0)
    with pytest.raises(ValueError, match="not a Brown file id"):
        split_documents(["ca01", "README"], **FRACTIONS, seed=0)


def occurring_in(runs: list[str], text: str, n: int) -> list[str]:
    """The runs of n or more words that occur as whole words in `text`.

    Fast on the real corpus: a run whose first n words are no n-gram of the text cannot
    occur; only the others are searched for as substrings.
    """
    words = text.split()
    grams = set(zip(*(words[i:] for i in range(n)), strict=False))
    padded = f" {text} "
    return [r for r in runs if tuple(r.split()[:n]) in grams and f" {r} " in padded]


def check_no_test_text_in_train(pools: TextPools, documents: dict[str, list[list[str]]], min_words: int) -> int:
    """No sentence of min_words or more words from a test document occurs in the train pool's text.

    Returns how many such sentences were checked (so that the check is not vacuous).
    """
    sentences = [clean_sentences([s]) for fileid in pools.fileids["test"] for s in documents[fileid]]
    long = [s for s in sentences if len(s.split()) >= min_words]
    assert occurring_in(long, pools.text("train"), min_words) == []
    return len(long)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, TextPools]:
    path = tmp_path_factory.mktemp("generated") / "brown.zip"
    write_brown_corpus(path, seed=0)
    return path, load_text_pools(path, **FRACTIONS, seed=0)


def test_generated_corpus_pools(generated):
    path, pools = generated
    documents = read_brown_documents(path)
    assert list(documents) == FILEIDS
    check_pools(pools.fileids, FILEIDS, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert pools.counts()["documents"] == {"train": 400, "val": 50, "test": 50}
    for split in TEXT_POOLS:
        expected = [clean_sentences(documents[f]) for f in pools.fileids[split]]
        assert list(pools.documents[split]) == expected
        assert pools.text(split) == clean_sentences([s for f in pools.fileids[split] for s in documents[f]])
    assert check_no_test_text_in_train(pools, documents, min_words=3) > 900
    again = load_text_pools(path, **FRACTIONS, seed=0)
    assert again == pools


def test_phrases_of_a_pool_come_from_its_documents(generated):
    _, pools = generated
    rng = np.random.default_rng(0)
    for split in TEXT_POOLS:
        text = pools.text(split)
        phrases = sample_phrases(text, 400, 32, rng)
        check_phrases(phrases, text, 32)  # runs of whole words of this pool's text
    long_test = [p for p in sample_phrases(pools.text("test"), 2000, 32, rng) if len(p.split()) >= 5]
    assert len(long_test) > 100
    assert occurring_in(long_test, pools.text("train"), 5) == []


def test_write_pool_text_holds_the_train_pool_only(generated, tmp_path):
    _, pools = generated
    out = tmp_path / "processed" / "train_text.txt"
    write_pool_text(out, pools, "train")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == [doc for doc in pools.documents["train"] if doc]
    assert " ".join(lines) == pools.text("train")
    assert out.read_bytes().endswith(b"\n") and list(tmp_path.rglob("*.tmp")) == []
    body = out.read_text(encoding="utf-8")
    for doc in pools.documents["val"] + pools.documents["test"]:
        assert doc not in body


def test_real_corpus_pools(real_documents):
    """The real corpus: 500 documents, genre = the file id's 2nd letter (cats.txt agrees), no test text in train."""
    assert list(real_documents) == FILEIDS
    with zipfile.ZipFile(REAL_BROWN) as archive:
        cats = dict(line.split() for line in archive.read("brown/cats.txt").decode("ascii").splitlines())
    letter_to_name = {brown_category(f): name for f, name in cats.items()}
    assert len(letter_to_name) == len(set(letter_to_name.values())) == 15
    assert all(letter_to_name[brown_category(f)] == name for f, name in cats.items())

    fileids = split_documents(real_documents, **FRACTIONS, seed=0)
    check_pools(fileids, FILEIDS, {"train": 0.8, "val": 0.1, "test": 0.1})
    pools = TextPools(
        fileids=fileids,
        documents={k: tuple(clean_sentences(real_documents[f]) for f in v) for k, v in fileids.items()},
    )
    counts = pools.counts()
    assert counts["documents"] == {"train": 400, "val": 50, "test": 50}
    assert counts["words"]["train"] > 700_000 and 80_000 < counts["words"]["test"] < 130_000
    # Short sentences ("Yes", "She shook her head") recur across documents; none of 7+ words does.
    assert check_no_test_text_in_train(pools, real_documents, min_words=7) > 4000
    rng = np.random.default_rng(0)
    long_test = [p for p in sample_phrases(pools.text("test"), 3000, 32, rng) if len(p.split()) >= 5]
    assert len(long_test) > 400
    assert occurring_in(long_test, pools.text("train"), 5) == []
    # The old way, one text for all splits: every test phrase is somewhere in the training text.
    assert len(occurring_in(long_test, " ".join(pools.text(s) for s in TEXT_POOLS), 5)) == len(long_test)
