"""The offline source: glyphs, the EMNIST look-alike archive and the Brown look-alike corpus."""

from __future__ import annotations

import gzip
import hashlib
import re
import zipfile
from collections import Counter
from pathlib import Path

import nltk
import numpy as np
import pytest

from text_recognizer.data.idx import IMAGES_MAGIC, LABELS_MAGIC, emnist_to_upright, read_idx, upright_to_emnist
from text_recognizer.data.synthetic import (
    brown_fileids,
    render_glyphs,
    write_brown_corpus,
    write_emnist_archive,
)
from text_recognizer.metadata import (
    ALL_EMNIST_MEMBERS,
    EMNIST_CLASSES,
    EMNIST_MEMBERS,
    EMNIST_SPLITS,
    NUM_EMNIST_CLASSES,
    SPLIT_CLASSES,
    byclass_to_split,
    official_mapping_text,
)

TRAIN_PER_CLASS, TEST_PER_CLASS = 3, 2


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("synthetic") / "gzip.zip"
    digests = write_emnist_archive(
        path, train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS, seed=7, pen_share=0.0
    )
    return path, digests


def _members(path: Path, out_dir: Path) -> dict[str, np.ndarray]:
    """{basename: array} of the archive's members, read with the project's IDX reader."""
    arrays = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if not name.endswith(".gz"):
                continue  # a split's mapping file (text)
            target = out_dir / Path(name).name
            target.write_bytes(zf.read(name))
            arrays[target.name] = read_idx(target)
    return arrays


def test_archive_has_exactly_the_official_members_stored(archive) -> None:
    path, _ = archive
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == list(ALL_EMNIST_MEMBERS)  # NIST's 30, in its alphabetical order
        assert set(EMNIST_MEMBERS) < set(ALL_EMNIST_MEMBERS) and len(ALL_EMNIST_MEMBERS) == 5 * len(EMNIST_SPLITS)
        for info in infos:
            assert info.compress_type == zipfile.ZIP_STORED
            if info.filename.endswith(".gz"):
                assert zf.read(info)[:2] == b"\x1f\x8b"  # each IDX member is itself gzip'd
            else:
                assert zf.read(info).decode("ascii") == official_mapping_text(info.filename.split("-")[1])


# Each split's classes, and glyphs per class in a file of per_class ByClass glyphs per class: ByMerge keeps NIST's
# counts (a merged class has both cases' glyphs), the others are equal-count like EMNIST's (Cohen et al. 2017).
SPLIT_COUNTS = {
    "byclass": (62, None),
    "bymerge": (47, None),
    "balanced": (47, 1),
    "letters": (26, 2),
    "digits": (10, 1),
    "mnist": (10, 1),
}


def test_every_split_is_derived_from_the_byclass_glyphs(archive, tmp_path: Path) -> None:
    path, digests = archive
    arrays = _members(path, tmp_path)
    byclass = {part: arrays[f"emnist-byclass-{part}-images-idx3-ubyte.gz"] for part in ("train", "test")}
    for split, (classes, times) in SPLIT_COUNTS.items():
        assert len(SPLIT_CLASSES[split]) == classes
        table = byclass_to_split(split)
        for part, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
            images = arrays[f"emnist-{split}-{part}-images-idx3-ubyte.gz"]
            labels = arrays[f"emnist-{split}-{part}-labels-idx1-ubyte.gz"].astype(np.int64)
            offset = 1 if split == "letters" else 0
            counts = np.bincount(labels - offset, minlength=classes)
            assert len(counts) == classes and counts.min() >= per_class, (split, part, counts)
            if times is not None:
                np.testing.assert_array_equal(counts, times * per_class)
            else:  # natural counts: each class as many as the ByClass classes merged into it
                merged = Counter(label for label in table if label is not None)
                np.testing.assert_array_equal(counts, [merged[c] * per_class for c in range(classes)])
            # every glyph is a ByClass glyph, of a class that maps to its label
            rows = {image.tobytes(): i for i, image in enumerate(byclass[part])}
            source = [rows[image.tobytes()] for image in images]
            byclass_labels = arrays[f"emnist-byclass-{part}-labels-idx1-ubyte.gz"][source]
            np.testing.assert_array_equal([table[c] for c in byclass_labels], labels)
    assert (
        arrays["emnist-mnist-train-images-idx3-ubyte.gz"].tobytes()
        == arrays["emnist-digits-train-images-idx3-ubyte.gz"].tobytes()
    )
    assert set(digests["sha256"]) == {Path(m).name for m in ALL_EMNIST_MEMBERS}


def test_members_read_back_with_right_magic_shapes_and_counts(archive, tmp_path: Path) -> None:
    path, digests = archive
    arrays = _members(path, tmp_path)
    names = [Path(m).name for m in EMNIST_MEMBERS]
    for name, expected_magic in zip(names, (IMAGES_MAGIC, LABELS_MAGIC, IMAGES_MAGIC, LABELS_MAGIC), strict=True):
        header = gzip.decompress((tmp_path / name).read_bytes())[:4]
        assert int.from_bytes(header, "big") == expected_magic
        assert digests["sha256"][name] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    for images_name, labels_name, per_class in (
        (names[0], names[1], TRAIN_PER_CLASS),
        (names[2], names[3], TEST_PER_CLASS),
    ):
        images, labels = arrays[images_name], arrays[labels_name]
        n = per_class * NUM_EMNIST_CLASSES
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(labels, minlength=NUM_EMNIST_CLASSES), per_class)
        assert not np.all(np.diff(labels.astype(int)) >= 0)  # shuffled, not sorted by class
    assert digests["md5"] == hashlib.md5(path.read_bytes()).hexdigest()


def test_images_are_stored_transposed(archive, tmp_path: Path) -> None:
    arrays = _members(archive[0], tmp_path)
    names = [Path(m).name for m in EMNIST_MEMBERS]
    stored, labels = arrays[names[0]], arrays[names[1]]
    # The archive holds exactly render_glyphs' upright output, transposed (same draws, same order).
    rng = np.random.default_rng(7)
    expected_labels = rng.permutation(np.repeat(np.arange(NUM_EMNIST_CLASSES, dtype=np.uint8), TRAIN_PER_CLASS))
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(stored, upright_to_emnist(render_glyphs(expected_labels, rng)))
    # And, without knowing how it was made: a tall narrow glyph ('1', 'l', 'I') is wide as stored ...
    tall = np.isin(labels, [EMNIST_CLASSES.index(c) for c in "1lI"])
    ink = stored[tall] > 64
    assert ink.any(axis=1).sum(axis=1).mean() > 1.8 * ink.any(axis=2).sum(axis=1).mean()
    # ... and tall once made upright.
    ink = emnist_to_upright(stored[tall]) > 64
    assert ink.any(axis=2).sum(axis=1).mean() > 1.8 * ink.any(axis=1).sum(axis=1).mean()


def test_archive_bytes_are_deterministic_per_seed(archive, tmp_path: Path) -> None:
    path, digests = archive
    again = write_emnist_archive(
        tmp_path / "same.zip", train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS, seed=7, pen_share=0.0
    )
    assert (tmp_path / "same.zip").read_bytes() == path.read_bytes()
    assert again == digests
    other = write_emnist_archive(
        tmp_path / "other.zip", train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS, seed=8, pen_share=0.0
    )
    assert other["md5"] != digests["md5"]
    glyph_files = [name for name in digests["sha256"] if name.endswith(".gz")]  # the mapping files are the same text
    assert {other["sha256"][name] for name in glyph_files}.isdisjoint(digests["sha256"][name] for name in glyph_files)


def test_render_glyphs_shape_ink_and_variety() -> None:
    labels = np.repeat(np.arange(NUM_EMNIST_CLASSES), 2)
    images = render_glyphs(labels, np.random.default_rng(0))
    assert images.shape == (2 * NUM_EMNIST_CLASSES, 28, 28) and images.dtype == np.uint8
    assert np.all(images.reshape(len(images), -1).max(axis=1) >= 200)  # every glyph has strong ink
    ink_fraction = (images > 64).mean(axis=(1, 2))
    assert np.all(ink_fraction > 0.02) and np.all(ink_fraction < 0.6)  # a glyph, not a blob or a speck
    # white on black, fitted inside the frame: the border rows/columns are (nearly) empty
    assert images[:, [0, -1], :].mean() < 5 and images[:, :, [0, -1]].mean() < 5
    # two samples of the same class differ
    assert all(not np.array_equal(images[2 * c], images[2 * c + 1]) for c in range(NUM_EMNIST_CLASSES))
    np.testing.assert_array_equal(images, render_glyphs(labels, np.random.default_rng(0)))
    assert not np.array_equal(images, render_glyphs(labels, np.random.default_rng(1)))


def test_render_glyphs_rejects_bad_labels() -> None:
    assert render_glyphs(np.zeros(0, dtype=np.int64), np.random.default_rng(0)).shape == (0, 28, 28)
    with pytest.raises(ValueError, match=r"0\.\.61"):
        render_glyphs(np.array([0, 62]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="1-D"):
        render_glyphs(np.zeros((2, 2), dtype=np.int64), np.random.default_rng(0))


def test_glyphs_are_learnable_but_not_trivial() -> None:
    """Nearest centroid on raw pixels, 10 classes: far above chance (10%), yet not perfect."""
    rng = np.random.default_rng(0)
    classes = np.arange(10)
    train_labels, test_labels = np.repeat(classes, 30), np.repeat(classes, 20)
    train = render_glyphs(train_labels, rng).reshape(len(train_labels), -1) / 255.0
    test = render_glyphs(test_labels, rng).reshape(len(test_labels), -1) / 255.0
    centroids = np.stack([train[train_labels == c].mean(axis=0) for c in classes])
    distances = ((test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    accuracy = float((distances.argmin(axis=1) == test_labels).mean())
    assert 0.5 < accuracy < 0.98, accuracy


REAL_BROWN = Path(__file__).resolve().parents[1].parent / "shared/datasets/nltk_data/corpora/brown.zip"


@pytest.fixture(scope="module")
def brown(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("brown") / "brown.zip"
    return path, write_brown_corpus(path, seed=0)  # the defaults, as the download_brown stage writes it


def test_brown_corpus_reads_with_nltk(brown, monkeypatch: pytest.MonkeyPatch) -> None:
    path, digest = brown
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    # Recent NLTK only opens files under its data path: allow this folder, as a user's nltk_data would be.
    monkeypatch.setattr(nltk.data, "path", [str(path.parent), *nltk.data.path])
    reader = nltk.corpus.reader.CategorizedTaggedCorpusReader(
        nltk.data.ZipFilePathPointer(str(path), "brown/"),
        r"c[a-z]\d\d",
        cat_file="cats.txt",
        tagset="brown",
        encoding="ascii",
    )
    fileids = reader.fileids()
    assert fileids == [f for f, _ in brown_fileids()] and len(fileids) == 500  # the real corpus's documents
    assert fileids[:2] == ["ca01", "ca02"] and fileids[-1] == "cr09"
    assert len(reader.categories()) == 15 and "news" in reader.categories()
    assert len(reader.fileids(categories="news")) == 44 and reader.fileids(categories="news")[0] == "ca01"
    assert reader.categories("cm06") == ["science_fiction"]
    sents = reader.sents()
    assert len(sents) == 500 * 20
    assert all(len(s) >= 3 and s[-1] in {".", "?"} for s in sents)
    assert [len(reader.sents(f)) for f in ("ca01", "cr09")] == [20, 20]
    words = reader.words()
    assert len(set(words)) > 200  # a real vocabulary, not a handful of words
    assert any(w[0].isupper() for w in words) and any(w.isdigit() for w in words) and "," in words
    assert all(re.fullmatch(r"[A-Za-z0-9]+|[.,;?]", w) for w in words)
    tagged = reader.tagged_sents()[0]
    assert all(tag and tag == tag.upper() for _, tag in tagged)  # tags read as Brown tags
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert {"brown/cats.txt", "brown/README", "brown/CONTENTS", "brown/ca01"} <= set(names)
        assert len(names) == 504 and names == ["brown/", *sorted(names[1:], key=str.lower)]
        text = zf.read("brown/ca01").decode("ascii")
        assert zf.read("brown/cats.txt").decode().startswith("ca01 news\nca02 news\n")
    assert text.startswith("\n\n\t") and re.search(r" \./\.\n", text)
    assert re.fullmatch(r"(\n\n\t(\S+/\S+)( \S+/\S+)*\n)+\n", text)  # the real files' layout, to the last newline


def test_brown_corpus_has_the_real_layout(brown) -> None:
    """Member names, their order and cats.txt byte for byte as in NLTK's brown.zip (when ../shared has it)."""
    if not REAL_BROWN.is_file():
        pytest.skip(f"real Brown corpus not present at {REAL_BROWN}")
    path, _ = brown
    with zipfile.ZipFile(path) as ours, zipfile.ZipFile(REAL_BROWN) as real:
        assert ours.namelist() == real.namelist()
        assert ours.read("brown/cats.txt") == real.read("brown/cats.txt")
        for name in ("brown/ca01", "brown/cr09"):
            assert ours.read(name).startswith(b"\n\n\t") and real.read(name).startswith(b"\n\n\t")
            assert re.search(rb" [.?]/\.\n\n\Z", ours.read(name)) and real.read(name).endswith(b" ./.\n\n")


def test_brown_fileids_keep_the_real_mix_of_genres() -> None:
    real = Counter(f[1] for f, _ in brown_fileids())
    assert sum(real.values()) == 500 and real["j"] == 80 and real["m"] == 6
    for num_files in (1, 15, 40, 123, 499):
        files = brown_fileids(num_files)
        ids = [f for f, _ in files]
        assert len(ids) == len(set(ids)) == num_files and ids == sorted(ids)
        counts = Counter(f[1] for f in ids)
        for genre, n in real.items():
            assert abs(counts[genre] - num_files * n / 500) < 1, (num_files, genre)
            assert [f for f in ids if f[1] == genre] == [f"c{genre}{k:02d}" for k in range(1, counts[genre] + 1)]
        names = {category for _, category in files}
        assert len({f[1] for f in ids}) == len(names)  # one category name per genre letter
    for bad in (0, 501):
        with pytest.raises(ValueError, match="num_files"):
            brown_fileids(bad)


def test_brown_corpus_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = write_brown_corpus(tmp_path / "a.zip", seed=1, num_files=30, sentences_per_file=5)
    b = write_brown_corpus(tmp_path / "b.zip", seed=1, num_files=30, sentences_per_file=5)
    c = write_brown_corpus(tmp_path / "c.zip", seed=2, num_files=30, sentences_per_file=5)
    assert a == b and (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert a != c
    with pytest.raises(ValueError, match="num_files"):
        write_brown_corpus(tmp_path / "d.zip", seed=0, num_files=0)


def test_pen_glyphs_are_strokes_of_every_class_and_vary() -> None:
    """Pen glyphs: all 62 classes drawn, thin strokes (less ink than a filled font glyph), varied, deterministic."""
    from text_recognizer.data.pen_glyphs import render_pen_glyphs

    labels = np.repeat(np.arange(62), 3)
    pen = render_pen_glyphs(labels, np.random.default_rng(0))
    assert pen.shape == (186, 28, 28) and pen.dtype == np.uint8
    assert (pen.reshape(186, -1).max(axis=1) == 255).all()  # every class has strokes to draw
    np.testing.assert_array_equal(pen, render_pen_glyphs(labels, np.random.default_rng(0)))
    copies = pen.reshape(62, 3, -1).astype(np.float32)
    assert (np.abs(copies[:, 0] - copies[:, 1]).mean(axis=1) > 5).all()  # a glyph is never drawn twice the same
    fonts = render_glyphs(labels, np.random.default_rng(0))
    assert (pen > 127).mean() < (fonts > 127).mean()  # traced by a pen, not filled outlines


def test_pen_share_draws_that_share_with_a_pen(tmp_path) -> None:
    """pen_share 0 keeps the font-only archive bit for bit; 1 draws every glyph with a pen."""
    none = write_emnist_archive(tmp_path / "a.zip", train_per_class=2, test_per_class=1, seed=3, pen_share=0.0)
    same = write_emnist_archive(tmp_path / "b.zip", train_per_class=2, test_per_class=1, seed=3, pen_share=0.0)
    pen = write_emnist_archive(tmp_path / "c.zip", train_per_class=2, test_per_class=1, seed=3, pen_share=1.0)
    assert none == same and pen["md5"] != none["md5"]
