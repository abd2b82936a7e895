"""DeviceLoader's per-epoch seeds and per-batch crop, and the line data module's input lengths and CTC check."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from text_recognizer.data.augmentation import Augmentation
from text_recognizer.data.device_loader import POOL_BATCHES, DeviceLoader, EmnistLinesDataModule, epoch_seed
from text_recognizer.line_geometry import crop_lines, line_widths, output_lengths
from text_recognizer.lit_models.ctc import ctc_loss, greedy_decode
from text_recognizer.metadata import CHAR_TO_LINE_INDEX, GLYPH_SIZE, LINE_TOKENS, PAD_INDEX
from text_recognizer.models.line_cnn import LineCNN

WINDOW = {"window_width": 28, "window_stride": 8}  # the lines' window in these tests (params.yaml's line_model)


def _order(seed: int, epoch: int, n: int = 50) -> list[int]:
    loader = DeviceLoader(
        torch.zeros(n, 2, 2, dtype=torch.uint8), torch.arange(n), batch_size=n, shuffle=True, seed=seed, drop_last=False
    )
    return loader.indices(epoch).tolist()


def test_seeds_do_not_replay_each_other_shifted_by_an_epoch() -> None:
    assert _order(1, 0) != _order(0, 1)  # seed + epoch made these one and the same order
    assert _order(2, 0) != _order(0, 2) and _order(2, 1) != _order(1, 2)
    assert _order(0, 1) == _order(0, 1) and sorted(_order(1, 0)) == list(range(50))
    assert epoch_seed(1, 0, 1) != epoch_seed(0, 1, 1)  # the augmentation streams neither
    assert epoch_seed(0, 0, 1) != epoch_seed(0, 0, 2) != epoch_seed(0, 0)  # per rank, apart from the order
    with pytest.raises(ValueError, match="seed"):
        epoch_seed(-1, 0)


def test_loader_crops_each_batch_to_its_widest_row() -> None:
    gen = torch.Generator().manual_seed(0)
    n, width = 37, 30
    images = torch.randint(0, 256, (n, 4, width), generator=gen, dtype=torch.uint8)
    widths = torch.randint(1, width + 1, (n,), generator=gen)
    for drop_last, rank, world_size in [(False, 0, 1), (True, 0, 1), (False, 1, 2)]:
        loader = DeviceLoader(
            images,
            (torch.arange(n), widths),
            batch_size=8,
            shuffle=True,
            seed=5,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            widths=widths,
        )
        batches = list(loader)
        assert len(batches) == len(loader)
        for x, idx, w in batches:
            assert x.shape == (len(idx), 1, 4, int(w.max()))
            torch.testing.assert_close(x[:, 0], images[idx, :, : int(w.max())].float() / 255)
        assert any(x.shape[-1] < width for x, _, _ in batches)
    full = DeviceLoader(images, torch.arange(n), batch_size=8, shuffle=True, seed=5, drop_last=False)
    assert all(x.shape[-1] == width for x, _ in full)


def test_shuffled_lines_are_batched_by_width_within_pools_and_still_visit_each_line_once() -> None:
    gen = torch.Generator().manual_seed(1)
    n, width, batch = 80 * POOL_BATCHES, 64, 8
    widths = torch.randint(1, width + 1, (n,), generator=gen)
    images = torch.zeros(n, 2, width, dtype=torch.uint8)

    def loader(widths_or_none: torch.Tensor | None) -> DeviceLoader:
        return DeviceLoader(
            images, (torch.arange(n),), batch_size=batch, shuffle=True, seed=3, drop_last=False, widths=widths_or_none
        )

    pooled = loader(widths)
    order = pooled.indices(0)
    assert sorted(order.tolist()) == list(range(n))  # a permutation: every line once per epoch
    kept = sum(x.shape[-1] * len(idx) for x, idx in pooled)
    cropped_random = sum(int(widths[idx].max()) * len(idx) for _, idx in loader(None))
    assert kept < 0.8 * cropped_random  # grouping by width keeps far fewer columns than random batches
    spans = (widths[order].view(-1, batch).amax(1) - widths[order].view(-1, batch).amin(1)).float()
    assert spans.mean() < 0.3 * width  # each batch holds lines of similar width
    assert pooled.indices(0).tolist() == order.tolist() and pooled.indices(1).tolist() != order.tolist()


def test_loader_refuses_to_crop_under_a_warp_that_moves_ink_sideways() -> None:
    images, widths = torch.zeros(4, 28, 56, dtype=torch.uint8), torch.full((4,), 40)
    options = {"batch_size": 2, "shuffle": True, "seed": 0, "drop_last": False, "widths": widths}
    still = {"slant": 0.0, "elastic_alpha": 0.0, "elastic_sigma": 4.0, "stroke": 0.0}
    sideways = [
        Augmentation((2.0, 2.0), (0.0, 0.0), 0.0, **still),
        Augmentation((0.0, 0.0), (0.1, 0.0), 0.0, **still),
        Augmentation((0.0, 0.0), (0.0, 0.0), 1.0, **still),
        Augmentation((0.0, 2.0), (0.0, 0.1), 0.0, slant=10.0, elastic_alpha=1.0, elastic_sigma=5.0, stroke=0.5),
    ]  # the last: tan(10 degrees) * 14 + 1 + 1 = 4.47 px sideways, more than INK_MARGIN (4)
    for warp in sideways:
        with pytest.raises(ValueError, match="augmentation"):
            DeviceLoader(images, torch.arange(4), augment=warp, **options)  # type: ignore[arg-type]
    vertical = Augmentation(shift=(0.0, 2.0), scale=(0.0, 0.1), rotation=0.0, **still)
    DeviceLoader(images, torch.arange(4), augment=vertical, **options)  # type: ignore[arg-type]
    within = Augmentation((0.0, 2.0), (0.0, 0.1), 0.0, slant=8.0, elastic_alpha=1.0, elastic_sigma=5.0, stroke=0.5)
    DeviceLoader(images, torch.arange(4), augment=within, **options)  # type: ignore[arg-type]  # 3.97 px: kept
    with pytest.raises(ValueError, match="widths"):
        DeviceLoader(images, torch.arange(4), **{**options, "widths": torch.full((3,), 40)})  # type: ignore[arg-type]


# --- the line data module ------------------------------------------------------------------------------


def _write_lines(
    path: Path, texts: list[str], *, max_length: int, extents: list[int] | None = None, widths: list[int] | None = None
) -> Path:
    """The same lines as train and val split: ink (random) in the first `extents[i]` columns, default 28 per char."""
    rng = np.random.default_rng(0)
    image_width = GLYPH_SIZE * max_length
    extents = extents or [GLYPH_SIZE * len(t) for t in texts]
    images = np.zeros((len(texts), GLYPH_SIZE, image_width), dtype=np.uint8)
    labels = np.full((len(texts), max_length), PAD_INDEX, dtype=np.uint8)
    for i, (text, extent) in enumerate(zip(texts, extents, strict=True)):
        images[i, 4:24, :extent] = rng.integers(1, 256, (20, extent))
        labels[i, : len(text)] = [CHAR_TO_LINE_INDEX[c] for c in text]
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(LINE_TOKENS))
        for split in ("train", "val"):
            f[f"{split}/images"] = images
            f[f"{split}/labels"] = labels
            f[f"{split}/lengths"] = np.array([len(t) for t in texts], dtype=np.int32)
            if widths is not None:
                f[f"{split}/widths"] = np.array(widths, dtype=np.int32)
    return path


TEXTS = ["a", "hello", "ab cd", "xyz", "the quick fox", "jump", "aabb", "o", "no way", "zz"]


def test_cropped_batches_give_the_uncropped_loss_and_decode_of_each_line_alone(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "lines.h5", TEXTS, max_length=16)
    torch.manual_seed(0)
    model = LineCNN(width=8, fc_dim=16, dropout=0.2, head="none", stem="strided", **WINDOW)
    model(torch.rand(4, 1, 28, 64))  # BN running statistics away from their defaults
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.bias.data.uniform_(-1, 1)  # blank columns then activate, unlike the convs' zero padding
    model.eval()

    def batches(crop: bool) -> list[tuple[torch.Tensor, ...]]:
        module = EmnistLinesDataModule(path, batch_size=4, seed=0, augment=None, crop=crop, **WINDOW)
        return list(module.val_dataloader())

    cropped, full = batches(True), batches(False)
    assert [x.shape[-1] for x, *_ in full] == [GLYPH_SIZE * 16] * 3
    assert all(c[0].shape[-1] < f[0].shape[-1] for c, f in zip(cropped, full, strict=True))
    ink = torch.tensor([GLYPH_SIZE * len(t) for t in TEXTS])
    expected_lengths = output_lengths(line_widths(ink, GLYPH_SIZE * 16, 28, 8), 28, 8)
    assert torch.equal(torch.cat([b[3] for b in cropped]), expected_lengths)
    with torch.no_grad():
        for (xc, labels, lengths, steps), (xf, *targets) in zip(cropped, full, strict=True):
            assert all(torch.equal(a, b) for a, b in zip((labels, lengths, steps), targets, strict=True))
            logits_c, logits_f = model(xc, steps), model(xf, steps)
            torch.testing.assert_close(
                ctc_loss(logits_c, labels, lengths, steps), ctc_loss(logits_f, labels, lengths, steps)
            )
            alone = [greedy_decode(model(line, n), n)[0] for line, n in (crop_lines(x, 28, 8) for x in xf.split(1))]
            assert greedy_decode(logits_c, steps) == alone == greedy_decode(logits_f, steps)


def test_line_widths_are_measured_from_the_ink_whatever_the_file_says(tmp_path: Path) -> None:
    """A `widths` dataset (nothing writes one) is not read: the CTC lengths come from the ink, as evaluate's do."""
    extents = [GLYPH_SIZE * len(t) - 5 for t in TEXTS]
    path = _write_lines(tmp_path / "lines.h5", TEXTS, max_length=16, extents=extents, widths=[e + 40 for e in extents])
    module = EmnistLinesDataModule(path, batch_size=len(TEXTS), seed=0, augment=None, **WINDOW)
    (_, _, _, steps), *_ = list(module.val_dataloader())
    assert torch.equal(steps, output_lengths(line_widths(torch.tensor(extents), GLYPH_SIZE * 16, 28, 8), 28, 8))


def test_lines_ctc_cannot_align_are_refused_at_setup(tmp_path: Path) -> None:
    """'1111' needs 7 steps (4 characters, 3 blanks between equal neighbours); a 28-px stride gives it 5."""
    path = _write_lines(tmp_path / "lines.h5", ["1111", "12", "1234", "7"], max_length=5)
    strided = EmnistLinesDataModule(path, batch_size=2, seed=0, augment=None, window_width=28, window_stride=28)
    with pytest.raises(ValueError, match=r"1 of 4 train lines .* needs 7 steps and gets 5.*window_stride \(28\)"):
        strided.setup()
    EmnistLinesDataModule(path, batch_size=2, seed=0, augment=None, window_width=28, window_stride=8).setup()


def test_the_line_module_trains_with_the_warp_it_is_given(tmp_path: Path) -> None:
    """augment: an Augmentation (a train section's, data.augmentation.augmentation(run)) or None."""
    path = _write_lines(tmp_path / "lines.h5", TEXTS, max_length=16)
    warp = Augmentation((0.0, 1.0), (0.0, 0.05), 0.0, slant=5.0, elastic_alpha=1.0, elastic_sigma=5.0, stroke=0.3)
    for augment, expected in ((warp, warp), (None, None)):
        module = EmnistLinesDataModule(path, batch_size=4, seed=0, augment=augment, **WINDOW)
        assert module.train_dataloader().augment == expected and module.val_dataloader().augment is None
