"""Batches straight from uint8 tensors that live on the training device.

The FSDL labs fed the GPU through a torch DataLoader with per-sample PIL/torchvision
transforms in worker processes; on EMNIST (28x28 glyphs, ~700k of them) that CPU work, not
the network, set the pace. Here the whole uint8 array is copied to the device once (about
0.5 GB for EMNIST ByClass or 20k lines of 32 characters), each epoch is one on-device
`randperm`, and a batch is an index-gather, a cast to float and (for training) one batched
affine warp. No worker processes, no per-sample Python.

Layout of `text_recognizer/data/`: this module also holds the two LightningDataModules that
read the HDF5 files described in docs/architecture.md and hand out `DeviceLoader`s; the warp is
`data.augmentation`'s, the window arithmetic of lines `text_recognizer.line_geometry`'s.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import SequentialSampler

from text_recognizer.data.augmentation import Augmentation, augment_batch
from text_recognizer.data.emnist import check_mapping, check_split_mapping
from text_recognizer.line_geometry import (
    INK_MARGIN,
    crop_widths,
    ctc_steps_needed_rows,
    ink_extents,
    line_widths,
    output_lengths,
)
from text_recognizer.metadata import GLYPH_SIZE, LINE_TOKENS

# --- the loader ------------------------------------------------------------------------------


def place(tensor: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """Move `tensor` to the training device; on a CPU next to a GPU, pin it for fast async copies."""
    if device is None:
        return tensor
    device = torch.device(device)
    if device.type == "cpu":
        tensor = tensor.cpu()
        return tensor.pin_memory() if torch.cuda.is_available() else tensor
    return tensor.to(device, non_blocking=True)


POOL_BATCHES = 8  # lines are grouped by width within this many random batches (DeviceLoader)


def epoch_seed(seed: int, epoch: int, *stream: int) -> int:
    """A 64-bit torch seed drawn from (seed, epoch, *stream) together.

    `seed + epoch` would make seed 1 replay seed 0 one epoch later; SeedSequence hashes the
    pair, so every (seed, epoch) gets its own order. `stream` keys further independent streams
    (the augmentation of each rank) off the same pair.
    """
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got {seed}, {epoch}")
    sequence = np.random.SeedSequence([seed, epoch], spawn_key=tuple(stream))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


class DeviceLoader:
    """Iterates over (x, *targets) batches gathered from tensors that already sit on the device.

    images: (N, H, W) uint8; yielded as (B, 1, H, W) float in [0, 1] on the same device.
    targets: one tensor or a tuple of tensors with N rows, yielded as the matching rows.

    Each epoch shuffles with an on-device `torch.randperm` from a generator seeded from
    (seed, epoch) together (`epoch_seed`), so runs are reproducible, seeds do not replay each
    other's epochs, and every DDP rank draws the same permutation; rank r
    of world_size then takes its own contiguous slice of equal size (the last N % world_size
    indices of the permutation are left out, so shards stay disjoint and every rank runs the
    same number of steps, which DDP needs). With one rank and drop_last=False every example
    is visited exactly once per epoch.

    The epoch advances by itself on every `iter()`; Lightning also calls `set_epoch` (it finds
    it through `.sampler`, as for a DistributedSampler), which keeps the order tied to the
    trainer's epoch count. An unshuffled loader's `.sampler` is a SequentialSampler (`InOrder`):
    Lightning's overfit_batches asks for one, and otherwise warns that it turns shuffling off,
    which it cannot do here (it swaps the samplers of torch DataLoaders only); the data modules
    below stop shuffling themselves under overfit_batches.

    widths: optional (N,) int, the columns each image needs (lines: see EmnistLinesDataModule).
    Each batch is then cut to the largest of its rows' widths, so no compute goes to the padding
    right of its widest line. When shuffling, lines of similar width are batched together within
    pools of POOL_BATCHES random batches (`_width_pooled`). The batch widths of an epoch are
    computed in one go, so cropping costs one device sync per epoch, not per batch.
    """

    batch_sampler = None  # Lightning inspects .sampler/.batch_sampler; there is no torch sampler here

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | tuple[torch.Tensor, ...],
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        rank: int = 0,
        world_size: int = 1,
        augment: Augmentation | None = None,
        device: torch.device | str | None = None,
        widths: torch.Tensor | None = None,
    ) -> None:
        if images.ndim != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be (N, H, W) uint8, got {tuple(images.shape)} {images.dtype}")
        targets = (targets,) if isinstance(targets, torch.Tensor) else tuple(targets)
        for t in targets:
            if t.shape[0] != images.shape[0]:
                raise ValueError(f"targets have {t.shape[0]} rows, images {images.shape[0]}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if widths is not None:
            if widths.shape != images.shape[:1]:
                raise ValueError(f"widths must be ({images.shape[0]},), got {tuple(widths.shape)}")
            if augment is not None and augment.sideways(images.shape[1]) > INK_MARGIN:
                # the warp would move ink past the crop and the CTC lengths, which were measured on the unwarped images
                raise ValueError(
                    f"cropping to widths needs an augmentation that moves ink at most INK_MARGIN ({INK_MARGIN}) px "
                    f"sideways, got {augment.sideways(images.shape[1]):.2f}"
                )
        self.images = place(images, device)
        self.targets = tuple(place(t, device) for t in targets)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.augment = augment
        self.widths = None if widths is None else place(widths.long(), device)
        self.epoch = 0
        self.per_rank = images.shape[0] // world_size

    @property
    def sampler(self) -> DeviceLoader | InOrder:
        """Lightning calls `sampler.set_epoch(epoch)` before each epoch; we are our own sampler, an InOrder one
        when unshuffled (what Lightning's checks for shuffling look for)."""
        return self if self.shuffle else InOrder(self)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's indices for `epoch`, in visiting order (on the device)."""
        n = self.images.shape[0]
        if not self.shuffle:
            return torch.arange(n, device=self.device)[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]
        generator = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(n, generator=generator, device=self.device)
        order = order[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]
        if self.widths is None:
            return order
        return self._width_pooled(order, generator)

    def _width_pooled(self, order: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`order` sorted by width within each pool of POOL_BATCHES batches, then the batches shuffled.

        A random batch of lines almost always holds one near-full line, so cropping alone keeps
        ~80 % of the columns; batches of similar widths keep ~45 %. Sorting only inside a pool of a
        few random batches keeps the batches random in content, and the shuffle of whole batches
        keeps wide and narrow batches mixed over the epoch.
        """
        pool = torch.arange(len(order), device=order.device) // (POOL_BATCHES * self.batch_size)
        key = pool * (int(self.images.shape[2]) + 1) + self.widths[order].clamp(max=self.images.shape[2])
        order = order[torch.argsort(key, stable=True)]
        full = len(order) // self.batch_size
        batches = order[: full * self.batch_size].view(full, self.batch_size)
        shuffled = batches[torch.randperm(full, generator=generator, device=order.device)].reshape(-1)
        return torch.cat([shuffled, order[full * self.batch_size :]])

    def batch_widths(self, order: torch.Tensor) -> list[int]:
        """Columns to keep for each batch of `order`: the widest row's width (one sync for the epoch)."""
        full = self.images.shape[2]
        if self.widths is None:
            return [full] * len(self)
        steps = len(self) * self.batch_size
        padded = F.pad(self.widths[order[:steps]], (0, steps - min(steps, len(order))), value=0)  # (steps,)
        return padded.view(len(self), self.batch_size).amax(dim=1).clamp(max=full).tolist()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch = self.epoch
        self.epoch += 1
        order = self.indices(epoch)
        aug_generator = None
        if self.augment is not None:
            # A stream apart from the permutation's, different on every rank and epoch.
            aug_seed = epoch_seed(self.seed, epoch, self.rank + 1)
            aug_generator = torch.Generator(device=self.device).manual_seed(aug_seed)
        for i, width in enumerate(self.batch_widths(order)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx, :, :width].unsqueeze(1).float().div_(255.0)  # (B, 1, H, width) in [0, 1]
            if aug_generator is not None:
                x = augment_batch(x, aug_generator, self.augment)
            yield (x, *(t[idx] for t in self.targets))


class InOrder(SequentialSampler):
    """An unshuffled DeviceLoader's sampler as Lightning's checks see it: sequential, with set_epoch passed on
    to the loader (the augmentation's draws still follow the epoch). Iterating it gives this rank's indices."""

    def __init__(self, loader: DeviceLoader) -> None:
        super().__init__(range(loader.per_rank))
        self.loader = loader

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)


# --- data modules ------------------------------------------------------------------------------


def _check_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist (run the stage that writes it first)")
    return path


def _read_mapping(path: Path, expected: tuple[str, ...]) -> list[str]:
    """The file's `mapping` attribute, checked against metadata so labels cannot silently shift."""
    with h5py.File(path, "r") as f:
        return check_mapping(f, expected)


class _DeviceDataModule(pl.LightningDataModule):
    """Loads the train and val splits of an HDF5 file once and serves them as DeviceLoaders.

    augment: the warp of the train batches (`data.augmentation.augmentation(run)` of the train
    section), None for none.
    """

    target_names: tuple[str, ...] = ()

    def __init__(
        self, h5_path: str | os.PathLike[str], *, batch_size: int, seed: int, augment: Augmentation | None
    ) -> None:
        super().__init__()
        self.h5_path = _check_file(h5_path)
        self.batch_size = batch_size
        self.seed = seed
        self.augment: Augmentation | None = augment
        # split -> (images, targets, per-example crop widths or None)
        self.splits: dict[str, tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]] = {}
        self._device: torch.device | None = None

    def _placement(self) -> tuple[torch.device, int, int]:
        """(device, rank, world_size) of the attached trainer, or the CPU alone."""
        if self.trainer is None:
            return torch.device("cpu"), 0, 1
        return self.trainer.strategy.root_device, self.trainer.global_rank, self.trainer.world_size

    def _read_split(
        self, split: str, group: h5py.Group
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        """(images, targets, crop widths) of one split, on the CPU; subclasses add what they derive."""
        images = torch.from_numpy(np.asarray(group["images"], dtype=np.uint8))
        targets = tuple(torch.from_numpy(np.asarray(group[name]).astype(np.int64)) for name in self.target_names)
        return images, targets, None

    def setup(self, stage: str | None = None) -> None:
        device, _, _ = self._placement()
        if self.splits:
            if device != self._device:  # set up before a trainer was attached: move, don't re-read
                self.splits = {
                    k: (place(x, device), tuple(place(t, device) for t in ts), None if w is None else place(w, device))
                    for k, (x, ts, w) in self.splits.items()
                }
                self._device = device
            return
        self._device = device
        with h5py.File(self.h5_path, "r") as f:
            for split in ("train", "val"):
                if split not in f:
                    raise ValueError(f"{self.h5_path} has no '{split}' split")
                images, targets, widths = self._read_split(split, f[split])
                self.splits[split] = (
                    place(images, device),
                    tuple(place(t, device) for t in targets),
                    None if widths is None else place(widths, device),
                )

    def _overfitting(self) -> bool:
        """Whether the trainer runs Lightning's overfit_batches check, which needs the same first batches every
        epoch: Lightning turns shuffling off only in torch DataLoaders, so the data module does it here."""
        return self.trainer is not None and self.trainer.overfit_batches > 0

    def _loader(self, split: str, *, train: bool) -> DeviceLoader:
        self.setup()
        images, targets, widths = self.splits[split]
        _, rank, world_size = self._placement()
        return DeviceLoader(
            images,
            targets,
            batch_size=self.batch_size,
            shuffle=train and not self._overfitting(),
            seed=self.seed,
            drop_last=train and images.shape[0] // world_size > self.batch_size,  # BatchNorm needs > 1 sample
            rank=rank,
            world_size=world_size,
            augment=self.augment if train else None,
            widths=widths,
        )

    def train_dataloader(self) -> DeviceLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DeviceLoader:
        return self._loader("val", train=False)


class EmnistDataModule(_DeviceDataModule):
    """emnist.h5: (N, 28, 28) glyphs and their class labels 0..classes-1 of the EMNIST split the file holds."""

    target_names = ("labels",)

    def __init__(
        self, h5_path: str | os.PathLike[str], *, batch_size: int, seed: int, augment: Augmentation | None
    ) -> None:
        super().__init__(h5_path, batch_size=batch_size, seed=seed, augment=augment)
        with h5py.File(self.h5_path, "r") as f:  # the split's classes, checked against metadata
            self.mapping = check_split_mapping(f)

    def config(self) -> dict[str, Any]:
        """Input dims, output dims and mapping: what a model needs to be built (the FSDL contract)."""
        return {"input_dims": (1, GLYPH_SIZE, GLYPH_SIZE), "output_dims": (1,), "mapping": self.mapping}


class EmnistLinesDataModule(_DeviceDataModule):
    """emnist_lines.h5: (M, 28, 28 * max_length) lines, labels padded with PAD_INDEX, lengths.

    Batches are (x, labels, lengths, input_lengths): input_lengths (B,) are each line's CTC
    input lengths, the output steps of its own width (`line_widths`: the ink extent, up to the
    last ink column, plus INK_MARGIN, on the window lattice; measured here, as evaluate and predict
    measure it, so all three agree). With `crop` each batch is cut to its widest line (plus the columns its last
    windows read, `crop_widths`), so the padding is not convolved; the logits within each line's
    length are the same either way. At setup every train and val line is checked to get at least
    the steps CTC needs for its text (characters plus repeated neighbours): a ValueError names
    the lines that do not, instead of their loss silently becoming zero. window_width and
    window_stride are the line model's (params.yaml's line_model), with no defaults here.
    """

    target_names = ("labels", "lengths")

    def __init__(
        self,
        h5_path: str | os.PathLike[str],
        *,
        batch_size: int,
        seed: int,
        augment: Augmentation | None,
        window_width: int,
        window_stride: int,
        crop: bool = True,
    ) -> None:
        super().__init__(h5_path, batch_size=batch_size, seed=seed, augment=augment)
        self.mapping = _read_mapping(self.h5_path, LINE_TOKENS)
        self.window_width = window_width
        self.window_stride = window_stride
        self.crop = crop
        with h5py.File(self.h5_path, "r") as f:
            self.image_width = int(f["train"]["images"].shape[2])
            self.max_length = int(f["train"]["labels"].shape[1])

    def _read_split(
        self, split: str, group: h5py.Group
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        images, (labels, lengths), _ = super()._read_split(split, group)
        widths = line_widths(ink_extents(images), self.image_width, self.window_width, self.window_stride)  # (M,)
        input_lengths = output_lengths(widths, self.window_width, self.window_stride)  # (M,)
        self._check_alignable(split, labels, lengths, input_lengths)
        crop = crop_widths(widths, self.image_width, self.window_width, self.window_stride) if self.crop else None
        return images, (labels, lengths, input_lengths), crop

    def _check_alignable(
        self, split: str, labels: torch.Tensor, lengths: torch.Tensor, input_lengths: torch.Tensor
    ) -> None:
        needed = torch.from_numpy(ctc_steps_needed_rows(labels.numpy(), lengths.numpy()))
        short = torch.nonzero(input_lengths < needed).flatten()
        if short.numel() == 0:
            return
        i = int(short[0])
        raise ValueError(
            f"{short.numel()} of {len(labels)} {split} lines of {self.h5_path} get fewer LineCNN output steps than "
            f"CTC needs (characters plus one per repeated neighbour), e.g. line {i} with {int(lengths[i])} characters "
            f"needs {int(needed[i])} steps and gets {int(input_lengths[i])}: lower line_model.window_stride "
            f"({self.window_stride}) or line_model.window_width ({self.window_width}), or draw the lines with less "
            "overlap (emnist_lines.max_overlap)"
        )

    def config(self) -> dict[str, Any]:
        """Input dims, output dims and mapping: what a model needs to be built (the FSDL contract)."""
        return {
            "input_dims": (1, GLYPH_SIZE, self.image_width),
            "output_dims": (self.max_length,),
            "mapping": self.mapping,
        }


class EmnistLinesWindowsDataModule(EmnistLinesDataModule):
    """emnist_lines.h5 read one 28-px window per character (line_model.arch simple): batches (x, labels, lengths).

    Each line's own width is GLYPH_SIZE * its length, its characters' windows exactly, so a batch is cut to its
    longest text and holds max(lengths) windows; a per-window model reads every window the same with or without
    the cut. At setup the lines are checked to sit on that grid: a file drawn with overlap (its `max_overlap`
    attribute), or glyphs away from x = 28 * k (`glyph_x`), is a ValueError naming the fix, not a silent misreading.
    """

    def __init__(
        self, h5_path: str | os.PathLike[str], *, batch_size: int, seed: int, augment: Augmentation | None
    ) -> None:
        super().__init__(
            h5_path,
            batch_size=batch_size,
            seed=seed,
            augment=augment,
            window_width=GLYPH_SIZE,
            window_stride=GLYPH_SIZE,
        )

    def _read_split(
        self, split: str, group: h5py.Group
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        images, (labels, lengths), _ = _DeviceDataModule._read_split(self, split, group)
        self._check_grid(split, group, lengths)
        widths = (lengths.clamp(min=1) * GLYPH_SIZE).clamp(max=self.image_width)  # (M,)
        return images, (labels, lengths), widths

    def _check_grid(self, split: str, group: h5py.Group, lengths: torch.Tensor) -> None:
        overlap = float(group.file.attrs.get("max_overlap", 0.0))
        fix = (
            "draw the lines with emnist_lines.min_overlap=0 and emnist_lines.max_overlap=0, or use line_model.arch=ctc"
        )
        if overlap > 0:
            raise ValueError(f"{self.h5_path} was drawn with max_overlap={overlap}, but one window per character needs "
                             f"lines without overlap: {fix}")  # fmt: skip
        if "glyph_x" not in group:  # a file written without offsets (tests'): its attributes are all there is
            return
        x = torch.from_numpy(np.asarray(group["glyph_x"], dtype=np.int64))  # (M, max_length)
        grid = torch.arange(x.shape[1]) * GLYPH_SIZE  # (max_length,)
        off = ((x != grid) & (torch.arange(x.shape[1]) < lengths[:, None])).any(dim=1).nonzero().flatten()
        if off.numel():
            i = int(off[0])
            raise ValueError(f"{off.numel()} {split} lines of {self.h5_path} have glyphs off the {GLYPH_SIZE}-px "
                             f"grid, e.g. line {i} at x = {x[i, : int(lengths[i])].tolist()}: {fix}")  # fmt: skip
