"""EMNISTLines synthesis (text_recognizer.data.emnist_lines)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from text_recognizer.data.emnist_lines import (
    SPLITS,
    build_emnist_lines,
    composite,
    decode_labels,
    draw_layout,
    encode_texts,
    lines_stats,
    main,
    render_lines,
    save_sample_grid,
    split_rngs,
)
from text_recognizer.data.sentences import load_text_pools, random_strings, sample_phrases
from text_recognizer.errors import MissingInputError
from text_recognizer.line_geometry import ctc_steps_bound, ctc_steps_needed, ctc_steps_needed_rows
from text_recognizer.metadata import EMNIST_CLASSES, LINE_TOKENS, PAD_INDEX, SPACE_INDEX
from text_recognizer.params import ParamError

INK = {"train": 101, "val": 102, "test": 103}  # each split's glyphs are drawn with their own pixel value
PER_CLASS = {"train": 3, "val": 2, "test": 2}
PARAMS = {
    "max_length": 12,
    "min_overlap": 0.0,
    "max_overlap": 0.4,
    "num_train": 30,
    "num_val": 10,
    "num_test": 12,
    "seed": 3,
    "text_val_fraction": 0.2,
    "text_test_fraction": 0.2,
    "text_seed": 0,
    "random_text_share": 0.0,
}
POOL_PARAMS = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0}
SENTENCES = [
    "The/at jury/nn said/vbd ,/, ``/`` it's/pps+bez 1961/cd !/. ''/''",
    "Quick/jj brown/jj foxes/nns jump/vb over/in 42/cd lazy/jj dogs/nns ./.",
    "Xavier/np quoted/vbd Zola/np-tl and/cc Kafka/np --/-- very/ql wryly/rb ./.",
    "GOP/nn vows/vbz 7/cd 8/cd 9/cd 0/cd 5/cd 6/cd 3/cd 2/cd budgets/nns ;/. Yes/uh ./.",
    "Jim/np Hughes/np-tl won/vbd the/at Ohio/np-tl Valley/nn-tl race/nn in/in Utah/np ./.",
    "Extraordinarily/rb long/jj Mississippi/np words/nns happen/vb ./.",
]


def glyph_shape(kind: int, value: int) -> np.ndarray:
    """A few distinct 28x28 shapes, all drawn with one ink value."""
    g = np.zeros((28, 28), dtype=np.uint8)
    if kind == 0:
        g[4:24, 12:16] = value  # bar
    elif kind == 1:
        g[12:16, 4:24] = value  # dash
    else:
        g[np.arange(4, 24), np.arange(4, 24)] = value  # diagonal
        g[6:22, 6] = value
    return g


def write_emnist_h5(path: Path) -> Path:
    """emnist.h5 per docs/architecture.md; every class in every split, pixel values 0 and INK[split]."""
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(EMNIST_CLASSES))
        for split, per_class in PER_CLASS.items():
            labels = np.tile(np.arange(62, dtype=np.uint8), per_class)
            images = np.stack([glyph_shape(i % 3, INK[split]) for i in range(len(labels))])
            f[f"{split}/images"] = images
            f[f"{split}/labels"] = labels
            f[f"{split}/source_index"] = np.arange(len(labels), dtype=np.int64)
    return path


# Ten documents in two genres: the pools (0.2 / 0.2) get 2 val, 2 test and 6 train documents.
FILEIDS = [f"c{genre}{k:02d}" for genre in "ab" for k in range(1, 6)]


def document_words(fileid: str) -> list[str]:
    """Words found in this document only (e.g. "ca01w3"), so a phrase tells which pool it came from."""
    return [f"{fileid}w{k}" for k in range(12)]


def write_brown_zip(path: Path) -> Path:
    """brown.zip in NLTK's layout; each document holds one of SENTENCES and words of its own."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("brown/", b"")
        archive.writestr("brown/cats.txt", "".join(f"{f} {'news' if f[1] == 'a' else 'editorial'}\n" for f in FILEIDS))
        for i, fileid in enumerate(FILEIDS):
            own = " ".join(f"{w}/nn" for w in document_words(fileid)) + " ./."
            archive.writestr(f"brown/{fileid}", f"\n\n\t{SENTENCES[i % len(SENTENCES)]}\n\n\n\t{own}\n\n")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    return write_emnist_h5(folder / "emnist.h5"), write_brown_zip(folder / "brown.zip")


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "emnist_lines.h5"
    stats = build_emnist_lines(*inputs, out, **PARAMS, train_text_path=out.with_name("train_text.txt"), progress=False)
    assert stats["lines"] == {"train": 30, "val": 10, "test": 12}
    assert stats["documents"] == {"train": 6, "val": 2, "test": 2}
    return out


def naive_composite(glyph_index: np.ndarray, x: np.ndarray, glyphs: np.ndarray) -> np.ndarray:
    """The obvious per-glyph loop, as a reference."""
    images = np.zeros((len(glyph_index), 28, 28 * glyph_index.shape[1]), dtype=np.uint8)
    for i, k in zip(*np.nonzero(glyph_index >= 0), strict=True):
        window = images[i, :, x[i, k] : x[i, k] + 28]
        np.maximum(window, glyphs[glyph_index[i, k]], out=window)
    return images


# --- labels ----------------------------------------------------------------------------------


def test_encode_decode_round_trip():
    texts = ["", "a", "Hello World 42", "Z" * 16, "a b"]
    labels, lengths = encode_texts(texts, 16)
    assert labels.dtype == np.uint8 and labels.shape == (5, 16)
    assert lengths.dtype == np.int32 and lengths.tolist() == [0, 1, 14, 16, 3]
    assert labels[0].tolist() == [PAD_INDEX] * 16
    assert labels[4, :3].tolist() == [LINE_TOKENS.index("a"), SPACE_INDEX, LINE_TOKENS.index("b")]
    assert [decode_labels(row) for row in labels] == texts
    with pytest.raises(ValueError, match="longer than max_length"):
        encode_texts(["x" * 17], 16)
    for bad in ("it's", "café", "tab\there"):
        with pytest.raises(ValueError, match="outside LINE_CHARSET"):
            encode_texts([bad], 16)
    with pytest.raises(ValueError, match="not a character token"):
        decode_labels(np.array([2, 0, 1]))


# --- rendering -------------------------------------------------------------------------------


def test_saturating_max_never_wraps():
    full = np.full((2, 28, 28), 255, dtype=np.uint8)
    labels, lengths = encode_texts(["AA"], 2)
    images, glyph_index = render_lines(
        labels, lengths, full, np.array([10, 10]), min_overlap=0.5, max_overlap=0.5, rng=np.random.default_rng(0)
    )
    overlap = images[0, :, 14:28]  # step = round(28 * 0.5) = 14: glyph 1 covers 14..41
    assert (overlap == 255).all()
    assert (images[0, :, :42] == 255).all() and (images[0, :, 42:] == 0).all()
    assert ((full[0] + full[1])[:, 14:] == 254).all()  # what a uint8 sum would have drawn
    assert set(glyph_index[0].tolist()) <= {0, 1}


def test_overlap_zero_puts_glyph_k_at_28k():
    rng = np.random.default_rng(5)
    glyphs = rng.integers(1, 256, size=(124, 28, 28), dtype=np.uint8)
    glyph_labels = np.tile(np.arange(62), 2)
    labels, lengths = encode_texts(["ab c9", "Zz", ""], 6)
    images, glyph_index = render_lines(labels, lengths, glyphs, glyph_labels, min_overlap=0.0, max_overlap=0.0, rng=rng)
    assert images.shape == (3, 28, 28 * 6) and images.dtype == np.uint8
    for i in range(3):
        for k in range(6):
            cell = images[i, :, 28 * k : 28 * (k + 1)]
            if glyph_index[i, k] >= 0:
                assert (cell == glyphs[glyph_index[i, k]]).all()
                assert glyph_labels[glyph_index[i, k]] == labels[i, k] - 2
            else:
                assert labels[i, k] in (SPACE_INDEX, PAD_INDEX) and (cell == 0).all()
    assert glyph_index[0, 2] == -1  # the space
    assert (glyph_index[2] == -1).all()


@pytest.mark.parametrize(("min_overlap", "max_overlap"), [(0.0, 0.33), (0.2, 0.7), (0.97, 0.99), (0.5, 0.5)])
def test_composite_matches_per_glyph_loop(min_overlap, max_overlap):
    rng = np.random.default_rng(11)
    glyphs = rng.integers(0, 256, size=(62 * 3, 28, 28), dtype=np.uint8)
    glyph_labels = np.tile(np.arange(62), 3)
    texts = ["".join(rng.choice(list("ab c0Z"), size=int(n))).strip() or "a" for n in rng.integers(1, 15, 300)]
    labels, lengths = encode_texts(texts, 14)
    glyph_index, x = draw_layout(
        labels, lengths, glyph_labels, min_overlap=min_overlap, max_overlap=max_overlap, rng=rng
    )
    steps = np.diff(x, axis=1)
    assert steps.min() >= round(28 * (1 - max_overlap)) and steps.max() <= round(28 * (1 - min_overlap))
    assert (x[:, 0] == 0).all()
    assert np.array_equal(composite(glyph_index, x, glyphs), naive_composite(glyph_index, x, glyphs))


def test_render_lines_is_deterministic_and_checks_its_pool():
    glyphs = np.random.default_rng(0).integers(0, 256, size=(62, 28, 28), dtype=np.uint8)
    labels, lengths = encode_texts(["abc def", "x"], 8)
    args = (labels, lengths, glyphs, np.arange(62))
    a = render_lines(*args, min_overlap=0.1, max_overlap=0.3, rng=np.random.default_rng(9))
    b = render_lines(*args, min_overlap=0.1, max_overlap=0.3, rng=np.random.default_rng(9))
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    no_x = np.array([c for c in range(62) if EMNIST_CLASSES[c] != "x"])
    with pytest.raises(ValueError, match="no glyph of class"):
        render_lines(labels, lengths, glyphs[no_x], no_x, min_overlap=0, max_overlap=0, rng=np.random.default_rng())


# --- the HDF5 file ---------------------------------------------------------------------------


def test_each_split_uses_only_its_own_glyphs(built, inputs):
    with h5py.File(built) as f, h5py.File(inputs[0]) as src:
        for split in SPLITS:
            images, labels = f[split]["images"][()], f[split]["labels"][()]
            glyph_index = f[split]["glyph_index"][()]
            assert set(np.unique(images).tolist()) == {0, INK[split]}, split
            is_glyph = (labels != PAD_INDEX) & (labels != SPACE_INDEX)
            assert (glyph_index[~is_glyph] == -1).all()
            pool_labels = src[split]["labels"][()]
            assert (glyph_index[is_glyph] < len(pool_labels)).all()
            assert (pool_labels[glyph_index[is_glyph]] == labels[is_glyph] - 2).all(), split


def test_labels_round_trip_to_the_sampled_text(built, inputs):
    pools = load_text_pools(inputs[1], **POOL_PARAMS)
    rngs = split_rngs(PARAMS["seed"])
    max_length = PARAMS["max_length"]
    with h5py.File(built) as f:
        assert json.loads(f.attrs["mapping"]) == list(LINE_TOKENS)
        assert f.attrs["max_length"] == max_length and f.attrs["seed"] == PARAMS["seed"]
        assert f.attrs["min_overlap"] == PARAMS["min_overlap"] and f.attrs["max_overlap"] == PARAMS["max_overlap"]
        for split in SPLITS:
            group = f[split]
            expected = sample_phrases(pools.text(split), len(group["labels"]), max_length, rngs[split])
            decoded = [decode_labels(row) for row in group["labels"][()]]
            assert decoded == expected
            lengths = group["lengths"][()]
            assert lengths.dtype == np.int32 and lengths.tolist() == [len(t) for t in expected]
            assert lengths.max() <= max_length
            assert group["images"].shape == (len(expected), 28, 28 * max_length)
            assert group["images"].dtype == np.uint8 and group["labels"].dtype == np.uint8
            assert group["glyph_index"].dtype == np.int64


def test_build_is_deterministic(built, inputs, tmp_path):
    again = tmp_path / "again.h5"
    build_emnist_lines(*inputs, again, **PARAMS, progress=False)
    assert again.read_bytes() == built.read_bytes()
    other = tmp_path / "other.h5"
    build_emnist_lines(*inputs, other, **{**PARAMS, "seed": 4}, progress=False)
    with h5py.File(built) as a, h5py.File(other) as b:
        assert not np.array_equal(a["train/images"][()], b["train/images"][()])


def test_splits_draw_from_independent_generators(built, inputs, tmp_path):
    more_train = tmp_path / "more_train.h5"
    build_emnist_lines(*inputs, more_train, **{**PARAMS, "num_train": 5}, progress=False)
    with h5py.File(built) as a, h5py.File(more_train) as b:
        for name in ("images", "labels", "glyph_index"):
            assert np.array_equal(a[f"test/{name}"][()], b[f"test/{name}"][()])
        assert len(b["train/images"]) == 5


def test_each_split_shows_only_its_own_documents(built, inputs):
    pools = load_text_pools(inputs[1], **POOL_PARAMS)
    owner = {w: fileid for fileid in FILEIDS for w in document_words(fileid)}
    with h5py.File(built) as f:
        assert json.loads(f.attrs["text_pool_documents"]) == {"train": 6, "val": 2, "test": 2}
        recorded = json.loads(f.attrs["text_pool_fileids"])
        assert {k: tuple(v) for k, v in recorded.items()} == pools.fileids
        assert f.attrs["text_val_fraction"] == 0.2 and f.attrs["text_test_fraction"] == 0.2
        assert f.attrs["text_seed"] == 0
        seen = dict.fromkeys(SPLITS, 0)  # words that name their document, per split
        for split in SPLITS:
            for row in f[split]["labels"][()]:
                text = decode_labels(row)
                assert f" {text} " in f" {pools.text(split)} " or len(text) == PARAMS["max_length"]
                for word in text.split():
                    if word in owner:
                        seen[split] += 1
                        assert owner[word] in recorded[split], (split, text)
    assert min(seen.values()) >= 3, seen  # the check has teeth in every split
    assert set(recorded["test"]).isdisjoint(recorded["train"]) and set(recorded["val"]).isdisjoint(recorded["train"])


def test_train_text_is_the_train_pool_only(built, inputs):
    pools = load_text_pools(inputs[1], **POOL_PARAMS)
    body = built.with_name("train_text.txt").read_text(encoding="utf-8")
    assert body.splitlines() == list(pools.documents["train"])
    words = set(body.split())
    for split in ("val", "test"):
        for fileid in pools.fileids[split]:
            assert words.isdisjoint(document_words(fileid)), fileid
    for fileid in pools.fileids["train"]:
        assert set(document_words(fileid)) <= words


def test_text_seed_moves_documents_and_seed_does_not(inputs, tmp_path):
    def pools_of(**change) -> dict:
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.h5"
        build_emnist_lines(*inputs, out, **{**PARAMS, **change}, progress=False)
        with h5py.File(out) as f:
            return json.loads(f.attrs["text_pool_fileids"])

    base = pools_of()
    assert pools_of(seed=9) == base
    moved = [pools_of(text_seed=s) for s in (1, 2, 3)]
    assert any(m["test"] != base["test"] for m in moved)


def test_random_strings_are_words_of_any_class_and_numbers_within_the_length():
    lines = random_strings(3000, 12, np.random.default_rng(0))
    assert all(1 <= len(line) <= 12 and line == line.strip() and "  " not in line for line in lines)
    assert set("".join(lines)) <= set(EMNIST_CLASSES) | {" "}
    words = [w for line in lines for w in line.split()]
    numbers = [w for w in words if w.isdigit()]
    assert 0.3 < len(numbers) / len(words) < 0.7  # half the words are numbers...
    assert len(set("".join(words))) == 62  # ...and every class shows up
    assert np.mean([len(line) for line in lines]) > 5  # lines fill their drawn length, not one short word each
    assert random_strings(50, 12, np.random.default_rng(1)) == random_strings(50, 12, np.random.default_rng(1))


def test_random_text_share_adds_made_up_train_lines_after_the_prose(built, inputs, tmp_path):
    mixed = tmp_path / "mixed.h5"
    stats = build_emnist_lines(*inputs, mixed, **{**PARAMS, "random_text_share": 0.5}, progress=False)
    assert stats["lines"] == {"train": 45, "val": 10, "test": 12}
    pools = load_text_pools(inputs[1], **POOL_PARAMS)
    with h5py.File(built) as a, h5py.File(mixed) as b:
        assert b.attrs["random_text_share"] == 0.5 and a.attrs["random_text_share"] == 0.0
        for split in ("val", "test"):  # byte for byte as without made-up lines
            for name in ("images", "labels", "glyph_index", "glyph_x"):
                assert np.array_equal(a[f"{split}/{name}"][()], b[f"{split}/{name}"][()])
        assert np.array_equal(a["train/labels"][()], b["train/labels"][:30])  # the same 30 prose texts first
        made_up = [decode_labels(row) for row in b["train/labels"][30:]]
        assert b["train/images"][30:].max(axis=(1, 2)).min() > 0  # drawn, not left blank
    assert len(made_up) == 15
    assert sum(f" {text} " not in f" {pools.text('train')} " for text in made_up) >= 13
    assert any(ch.isdigit() for text in made_up for ch in text)


def test_an_empty_text_pool_is_refused_before_any_output(inputs, tmp_path):
    out = tmp_path / "out" / "emnist_lines.h5"
    text = out.with_name("train_text.txt")
    with pytest.raises(ParamError, match=r"emnist_lines\.text_test_fraction .*emnist_lines\.num_test=12"):
        build_emnist_lines(*inputs, out, **{**PARAMS, "text_test_fraction": 0.0}, train_text_path=text, progress=False)
    assert not out.exists() and not text.exists()
    # No test lines, no test text needed.
    stats = build_emnist_lines(*inputs, out, **{**PARAMS, "text_test_fraction": 0.0, "num_test": 0}, progress=False)
    assert stats["lines"]["test"] == 0 and stats["documents"]["test"] == 0


# --- what CTC needs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "steps"),
    [("", 0), ("a", 1), ("ab", 2), ("aa", 3), ("aaaa", 7), ("bookkeeper", 13), ("a a", 3), ("Aa", 2), ("1100", 6)],
)
def test_ctc_steps_needed(text, steps):
    assert ctc_steps_needed(text) == steps
    labels, lengths = encode_texts([text, "x"], 12)
    assert ctc_steps_needed(labels[0]) == steps  # a padded label row counts up to its first pad
    assert ctc_steps_needed(labels[0, : len(text)]) == steps  # and an unpadded one to its end
    assert ctc_steps_needed_rows(labels, lengths).tolist() == [steps, 1]


def test_ctc_steps_needed_is_what_ctc_needs():
    """CTC's own loss: finite with ctc_steps_needed steps, infinite with one fewer (repeat-heavy lines)."""
    import torch

    for text in ("bookkeeper", "aaaa", "Mississippi", "abc"):
        labels, _ = encode_texts([text], len(text))
        target = torch.as_tensor(labels.astype(np.int64))
        need = ctc_steps_needed(text)
        for steps, finite in ((need, True), (need - 1, False)):
            log_probs = torch.zeros(steps, 1, len(LINE_TOKENS)).log_softmax(-1)
            loss = torch.nn.functional.ctc_loss(
                log_probs, target, torch.tensor([steps]), torch.tensor([len(text)]), blank=0, reduction="sum"
            )
            assert bool(torch.isfinite(loss)) is finite, (text, steps)
    assert ctc_steps_needed("a" * 32) == ctc_steps_bound(32) == 63  # the params guard's bound is reached


def test_ctc_steps_needed_rows_matches_the_scalar_version():
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("aab b"), size=int(n))).strip() for n in rng.integers(0, 20, 500)]
    labels, lengths = encode_texts(texts, 20)
    assert ctc_steps_needed_rows(labels, lengths).tolist() == [ctc_steps_needed(t) for t in texts]
    with pytest.raises(ValueError, match="one label row"):
        ctc_steps_needed(labels)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"min_overlap": 0.5, "max_overlap": 0.3}, "min_overlap"),
        ({"max_overlap": 1.0}, "max_overlap"),
        ({"min_overlap": -0.1}, "min_overlap"),
        ({"max_length": 0}, "max_length"),
        ({"num_train": -1}, "num_train"),
        ({"num_val": -2}, "num_val"),
        ({"num_test": -3}, "num_test"),
        ({"seed": -1}, "seed"),
        ({"max_length": 3.5}, "max_length"),
        ({"text_val_fraction": -0.1}, "text_val_fraction"),
        ({"text_test_fraction": 1.0}, "text_test_fraction"),
        ({"text_val_fraction": 0.5, "text_test_fraction": 0.5}, "text_test_fraction"),
        ({"text_seed": -1}, "text_seed"),
        ({"text_seed": 0.5}, "text_seed"),
    ],
)
def test_invalid_params_rejected_before_any_output(tmp_path, change, name):
    out = tmp_path / "out" / "emnist_lines.h5"
    with pytest.raises(ParamError, match=rf"emnist_lines\.{name}"):
        # The inputs do not even exist: the parameters are checked before anything is read.
        build_emnist_lines(tmp_path / "no.h5", tmp_path / "no.zip", out, **{**PARAMS, **change}, progress=False)
    assert not out.exists() and not out.parent.exists()


def test_missing_inputs_are_reported(inputs, tmp_path):
    out = tmp_path / "emnist_lines.h5"
    with pytest.raises(FileNotFoundError, match="emnist_hdf5") as hdf5:
        build_emnist_lines(tmp_path / "no.h5", inputs[1], out, **PARAMS, progress=False)
    with pytest.raises(FileNotFoundError, match="download_brown") as brown:
        build_emnist_lines(inputs[0], tmp_path / "no.zip", out, **PARAMS, progress=False)
    assert isinstance(hdf5.value, MissingInputError) and isinstance(brown.value, MissingInputError)
    assert list(tmp_path.iterdir()) == []


def test_sample_grid_and_stats(built, tmp_path, capsys):
    import matplotlib.image

    png = tmp_path / "grid.png"
    save_sample_grid(built, png, n=4)
    picture = matplotlib.image.imread(png)
    assert picture.ndim == 3 and picture.shape[1] >= 1000
    assert picture[..., :3].min() < 0.2 and picture[..., :3].max() > 0.9  # dark ink on white paper
    stats = lines_stats(built)
    assert [stats[s]["lines"] for s in SPLITS] == [30, 10, 12]
    assert stats["test"]["pixel_max"] == INK["test"] and 0 < stats["test"]["ink_fraction"] < 1
    assert main([str(built)]) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "30 lines" in printed and "max 103" in printed
