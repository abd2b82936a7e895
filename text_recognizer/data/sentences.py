"""Phrases of real English from the Brown corpus, the text that EMNISTLines draws.

The corpus is read through NLTK's own Brown reader from the `brown.zip` that the
download_brown stage fetched, so the pipeline never depends on a machine-wide NLTK data
folder. The text is cleaned to the characters that EMNIST has glyphs for (digits and
letters) plus the space, then cut into phrases of whole words.
"""

from __future__ import annotations

import contextlib
import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from text_recognizer.metadata import EMNIST_CLASSES

# NLTK's own settings for the Brown corpus (nltk/corpus/__init__.py).
BROWN_FILEIDS = r"c[a-z]\d\d"
BROWN_FILEID_RE = re.compile(BROWN_FILEIDS)
_NOT_GLYPH = re.compile("[^" + re.escape("".join(EMNIST_CLASSES)) + " ]+")


class BrownCorpusError(ValueError):
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
        raise FileNotFoundError(f"Brown corpus not found at {path}: run the download_brown stage first")
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


def read_brown_sentences(zip_path: str | os.PathLike[str]) -> list[list[str]]:
    """Every sentence of the corpus as a list of tokens (words and punctuation), in corpus order."""
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
            return [list(sentence) for sentence in reader.sents()]
        except (UnicodeDecodeError, ValueError) as err:
            raise BrownCorpusError(f"{path}: NLTK could not read it as the Brown corpus ({err})") from err


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
