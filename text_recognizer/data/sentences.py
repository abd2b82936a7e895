"""Phrases of real English from the Brown corpus, the text that EMNISTLines draws.

The corpus is read through NLTK's own Brown reader from the `brown.zip` that the
download_brown stage fetched, so the pipeline never depends on a machine-wide NLTK data
folder. The text is cleaned to the characters that EMNIST has glyphs for (digits and
letters) plus the space, then cut into phrases of whole words.

The 500 documents are dealt into train / val / test text pools (split_documents, stratified
by genre), so that test lines show text that neither the line model nor anything estimated
from the train text (a language model) has read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from text_recognizer.errors import InputError, MissingInputError
from text_recognizer.io import atomic_path
from text_recognizer.metadata import EMNIST_CLASSES

# NLTK's own settings for the Brown corpus (nltk/corpus/__init__.py).
BROWN_FILEIDS = r"c[a-z]\d\d"
BROWN_FILEID_RE = re.compile(BROWN_FILEIDS)
TEXT_POOLS = ("train", "val", "test")  # the splits of emnist_lines, each with its own documents
_NOT_GLYPH = re.compile("[^" + re.escape("".join(EMNIST_CLASSES)) + " ]+")


class BrownCorpusError(InputError):
    """The file is not NLTK's brown.zip (or holds no usable text)."""


@contextlib.contextmanager
def _nltk_may_read(path: Path) -> Iterator[None]:
    """Let NLTK read this one file, for the duration of the block only.

    NLTK >= 3.10 refuses to open files outside its data roots (`nltk.pathsec`), and the
    roots come from `nltk.data.path`. We add the resolved zip file itself (not its folder)
    and remove exactly that entry afterwards, so nothing else is authorised and the list is
    as it was when the block ends, error or not. Not thread-safe against other code that
    edits `nltk.data.path` at the same moment.
    """
    import nltk.data

    entry = str(path.resolve())
    nltk.data.path.append(entry)
    try:
        yield
    finally:
        for i in range(len(nltk.data.path) - 1, -1, -1):
            if nltk.data.path[i] is entry:
                del nltk.data.path[i]
                break


def _check_brown_zip(path: Path) -> None:
    """Fail with a clear message before NLTK sees a file that is not brown.zip."""
    if not path.is_file():
        raise MissingInputError(
            f"Brown corpus not found at {path}: run the download_brown stage first (dvc repro download_brown)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile as err:
        raise BrownCorpusError(f"{path} is not a zip file ({err}); expected NLTK's brown.zip") from err
    fileids = [n[len("brown/") :] for n in names if n.startswith("brown/")]
    if "brown/cats.txt" not in names or not any(BROWN_FILEID_RE.fullmatch(f) for f in fileids):
        raise BrownCorpusError(
            f"{path} is not NLTK's brown.zip: expected a folder brown/ with cats.txt and files ca01..cr09"
        )


def read_brown_documents(zip_path: str | os.PathLike[str]) -> dict[str, list[list[str]]]:
    """{fileid: its sentences as lists of tokens}, fileids in corpus order (ca01 ... cr09).

    Documents are kept apart so that each split's text can come from its own documents
    (split_documents); a sentence never spans two files, so nothing is cut at a boundary.
    """
    import nltk.data
    from nltk.corpus.reader import CategorizedTaggedCorpusReader

    path = Path(zip_path)
    _check_brown_zip(path)
    with _nltk_may_read(path):
        reader = CategorizedTaggedCorpusReader(
            nltk.data.ZipFilePathPointer(str(path.resolve()), "brown/"),
            BROWN_FILEIDS,
            cat_file="cats.txt",
            tagset="brown",
            encoding="ascii",
        )
        try:
            # The reader is lazy: materialise inside the block, while NLTK may still open the file.
            return {fileid: [list(s) for s in reader.sents(fileid)] for fileid in reader.fileids()}
        except (UnicodeDecodeError, ValueError) as err:
            raise BrownCorpusError(f"{path}: NLTK could not read it as the Brown corpus ({err})") from err


def read_brown_sentences(zip_path: str | os.PathLike[str]) -> list[list[str]]:
    """Every sentence of the corpus as a list of tokens (words and punctuation), in corpus order."""
    return [sentence for sentences in read_brown_documents(zip_path).values() for sentence in sentences]


def clean_sentences(sentences: Iterable[Sequence[str]]) -> str:
    """One string of words over LINE_CHARSET, single spaces between words and sentences.

    A token loses every character EMNIST has no glyph for (so "Atlanta's" becomes
    "Atlantas"); a token left empty, such as punctuation, is dropped. Spaces only ever
    separate words, so a phrase cut at spaces is always a run of whole words.
    """
    joined = " ".join(" ".join(tokens) for tokens in sentences)
    return " ".join(_NOT_GLYPH.sub("", joined).split())


def load_brown_text(zip_path: str | os.PathLike[str]) -> str:
    """The whole Brown corpus as one cleaned string (see clean_sentences), read through NLTK.

    Raises FileNotFoundError if the zip is missing, BrownCorpusError (a ValueError) if it is
    not a Brown corpus. No download, and NLTK's settings are left as they were.
    """
    text = clean_sentences(read_brown_sentences(zip_path))
    if not text:
        raise BrownCorpusError(f"{zip_path}: the corpus holds no letters or digits")
    return text


def brown_category(fileid: str) -> str:
    """The genre letter of a Brown file id ("a" for "ca01"), the category cats.txt gives it too."""
    if not BROWN_FILEID_RE.fullmatch(fileid):
        raise ValueError(f"{fileid!r} is not a Brown file id (like 'ca01')")
    return fileid[1]


def _apportion(sizes: Sequence[int], fraction: float) -> list[int]:
    """Counts per group summing to round(fraction * total), each within 1 of fraction * its size.

    Largest remainder (Hamilton): the whole pool has the asked share, and each genre its
    share as nearly as whole documents allow. Ties go to the earlier group.
    """
    quotas = [fraction * n for n in sizes]
    counts = [math.floor(q + 1e-9) for q in quotas]
    left = math.floor(fraction * sum(sizes) + 0.5 + 1e-9) - sum(counts)
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts


def split_documents(
    fileids: Iterable[str], *, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, tuple[str, ...]]:
    """Deal Brown documents into {"train", "val", "test"} pools, disjoint, stratified by genre.

    The val and test pools get round(fraction * number of documents) documents each, spread
    over the genres in proportion to their sizes (_apportion); the train pool gets the rest.
    Which documents of a genre go where is a permutation drawn from (seed, genre letter), so
    a genre's assignment does not depend on the other genres. Each pool is sorted.
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ValueError(f"need 0 <= fractions and val + test < 1, got val {val_fraction}, test {test_fraction}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    ids = list(fileids)
    if len(set(ids)) != len(ids):
        raise ValueError("fileids must be unique")
    by_genre: dict[str, list[str]] = {}
    for fileid in sorted(ids):
        by_genre.setdefault(brown_category(fileid), []).append(fileid)
    genres = sorted(by_genre)
    sizes = [len(by_genre[g]) for g in genres]
    test_counts = _apportion(sizes, test_fraction)
    val_counts = _apportion(sizes, val_fraction)
    pools: dict[str, list[str]] = {name: [] for name in TEXT_POOLS}
    for genre, size, n_test, n_val in zip(genres, sizes, test_counts, val_counts, strict=True):
        n_val = min(n_val, size - n_test)
        order = np.random.default_rng([seed, ord(genre)]).permutation(size).tolist()
        docs = [by_genre[genre][i] for i in order]
        pools["test"] += docs[:n_test]
        pools["val"] += docs[n_test : n_test + n_val]
        pools["train"] += docs[n_test + n_val :]
    return {name: tuple(sorted(docs)) for name, docs in pools.items()}


@dataclasses.dataclass(frozen=True)
class TextPools:
    """Each split's Brown documents and their cleaned text (clean_sentences, one string per document)."""

    fileids: dict[str, tuple[str, ...]]
    documents: dict[str, tuple[str, ...]]

    def text(self, split: str) -> str:
        """The pool's documents as one cleaned string, in fileid order (what sample_phrases cuts)."""
        return " ".join(doc for doc in self.documents[split] if doc)

    def counts(self) -> dict[str, dict[str, int]]:
        """{"documents": {split: n}, "words": {split: n}}: for the stage's stats and the h5 attrs."""
        return {
            "documents": {split: len(ids) for split, ids in self.fileids.items()},
            "words": {split: len(self.text(split).split()) for split in self.fileids},
        }


def load_text_pools(
    zip_path: str | os.PathLike[str], *, val_fraction: float, test_fraction: float, seed: int
) -> TextPools:
    """Read the corpus once and split it into text pools by document (see split_documents)."""
    corpus = read_brown_documents(zip_path)
    fileids = split_documents(corpus, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    documents = {split: tuple(clean_sentences(corpus[f]) for f in ids) for split, ids in fileids.items()}
    return TextPools(fileids=fileids, documents=documents)


def write_pool_text(path: str | os.PathLike[str], pools: TextPools, split: str = "train") -> None:
    """Write one pool's cleaned text, one document per line, UTF-8, atomically.

    Words are cleaned exactly as the line phrases are, so a character model estimated from
    this file sees the same alphabet as the lines; a newline only separates documents.
    """
    body = "".join(f"{doc}\n" for doc in pools.documents[split] if doc)
    with atomic_path(path, suffix=".txt") as tmp:
        tmp.write_text(body, encoding="utf-8")


def sample_phrases(text: str, n: int, max_length: int, rng: np.random.Generator) -> list[str]:
    """n phrases of whole words, 1..max_length characters each, drawn from `text`.

    Each phrase starts at a uniformly drawn word; its target length is uniform in
    1..max_length and it keeps as many whole words as fit. When even the first word does
    not fit the target, the phrase is that one word, cut to max_length if longer. So
    phrases never start or end with a space and are never empty. Vectorised: the real
    corpus (1M words) and 20,000 phrases take well under a second.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    words = text.split()
    if not words:
        raise ValueError("text holds no words")
    norm = " ".join(words)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    starts = np.zeros(len(words), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    ends = starts + lengths

    first = rng.integers(0, len(words), size=n)
    target = rng.integers(1, max_length + 1, size=n)
    begin = starts[first]
    last = np.searchsorted(ends, begin + target, side="right") - 1  # last word ending within the target
    one_word = last < first
    end = np.where(one_word, begin + np.minimum(lengths[first], max_length), ends[np.maximum(last, first)])
    return [norm[b:e] for b, e in zip(begin.tolist(), end.tolist(), strict=True)]


DIGITS = "".join(c for c in EMNIST_CLASSES if c.isdigit())
MAX_RANDOM_WORD = 8  # characters in one word of a random_strings line


def random_strings(n: int, max_length: int, rng: np.random.Generator) -> list[str]:
    """n lines of made-up words, 1..max_length characters each: numbers, and strings of any classes.

    Brown prose almost never shows a digit string or a capital inside a word, so a line model
    trained on prose alone reads "45085" as letters (measured on real handwritten digit strings:
    CER 0.87). Each word is 1..MAX_RANDOM_WORD characters, digits only or any of the 62 classes
    with even odds; a line keeps adding words while they fit a target length drawn like
    sample_phrases' (uniform in 1..max_length), and is never empty.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    classes = np.array(list(EMNIST_CLASSES))
    digits = np.array(list(DIGITS))
    lines = []
    for target in rng.integers(1, max_length + 1, size=n).tolist():
        words: list[str] = []
        used = -1  # the space before the first word is not drawn
        while True:
            size = int(rng.integers(1, MAX_RANDOM_WORD + 1))
            alphabet = digits if rng.random() < 0.5 else classes
            word = "".join(rng.choice(alphabet, size=min(size, target)).tolist())
            if words and used + 1 + len(word) > target:
                break
            words.append(word)
            used += 1 + len(word)
            if used >= target:
                break
        lines.append(" ".join(words))
    return lines


def phrases_text(train_text: str, num_phrases: int, max_length: int, rng: np.random.Generator) -> str:
    """Phrases cut from a pool's text as the lines are cut, one a line: what a language model of the lines reads.

    Fitted on whole documents, a character model would learn line starts and ends from document
    starts and ends (measured: perplexity 21.6 on test phrases, no better than a unigram model,
    against 4.8 when fitted on phrases).
    """
    return "\n".join(sample_phrases(" ".join(train_text.split()), num_phrases, max_length, rng))
