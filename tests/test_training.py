"""DeviceLoader, augmentation, the Lightning modules and the training runs, on small offline data (CPU)."""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from text_recognizer.data.augmentation import Augmentation, augment_batch, augmentation
from text_recognizer.data.device_loader import DeviceLoader, EmnistDataModule
from text_recognizer.data.synthetic import render_glyphs
from text_recognizer.line_geometry import crop_lines
from text_recognizer.lit_models.ctc import character_error_rate, greedy_decode, indices_to_text, labels_to_texts
from text_recognizer.lit_models.optim import AdamWSettings, configure_adamw
from text_recognizer.metadata import (
    EMNIST_CLASSES,
    GLYPH_SIZE,
    LINE_TOKENS,
    PAD_INDEX,
    emnist_class_to_line_index,
)
from text_recognizer.models.char_archs import arch_kwargs
from text_recognizer.models.checkpoint import MODEL_BUILDERS, load_checkpoint
from text_recognizer.models.line_archs import line_arch_kwargs, line_network
from text_recognizer.params import LineModelParams, ModelParams, TrainParams, load_section
from text_recognizer.reading.evaluation import evaluate_char
from text_recognizer.training import (
    adamw_settings,
    build_datamodule,
    build_lightning_module,
    network_kwargs,
    resolve_hardware,
    train,
)

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"


def model_params(**overrides: object) -> ModelParams:
    """params.yaml's `model` section with `overrides` (sections have no defaults: params.yaml holds the values)."""
    return load_section("model", PARAMS_YAML, **overrides)


def line_model_params(**overrides: object) -> LineModelParams:
    return load_section("line_model", PARAMS_YAML, **overrides)


def train_params(**overrides: object) -> TrainParams:
    """params.yaml's `train_cnn` section with `overrides`: the run settings these tests start from."""
    return load_section("train_cnn", PARAMS_YAML, **overrides)


# --- small offline data files ---------------------------------------------------------------------


def _write_emnist_h5(path: Path, per_class: dict[str, int], *, classes: int, seed: int) -> Path:
    """Glyphs of the first `classes` EMNIST classes (the digits: quick to learn), `per_class` of each per split."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(EMNIST_CLASSES))
        for split, n in per_class.items():
            labels = rng.permutation(np.repeat(np.arange(classes), n)).astype(np.uint8)
            f.create_dataset(f"{split}/images", data=render_glyphs(labels, rng))
            f.create_dataset(f"{split}/labels", data=labels)
    return path


def _write_lines_h5(path: Path, counts: dict[str, int], *, classes: int, max_length: int, seed: int) -> Path:
    """Lines of 1..max_length random characters of the first `classes` EMNIST classes, glyphs side by side."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(LINE_TOKENS))
        f.attrs["max_length"] = max_length
        for split, m in counts.items():
            lengths = rng.integers(1, max_length + 1, m).astype(np.int32)
            chars = rng.integers(0, classes, (m, max_length))
            glyphs = render_glyphs(chars.reshape(-1), rng).reshape(m, max_length, GLYPH_SIZE, GLYPH_SIZE)
            images = np.zeros((m, GLYPH_SIZE, GLYPH_SIZE * max_length), dtype=np.uint8)
            labels = np.full((m, max_length), PAD_INDEX, dtype=np.uint8)
            for i in range(m):
                for j in range(lengths[i]):
                    cell = images[i, :, j * GLYPH_SIZE : (j + 1) * GLYPH_SIZE]
                    np.maximum(cell, glyphs[i, j], out=cell)
                    labels[i, j] = emnist_class_to_line_index(int(chars[i, j]))
            f.create_dataset(f"{split}/images", data=images)
            f.create_dataset(f"{split}/labels", data=labels)
            f.create_dataset(f"{split}/lengths", data=lengths)
    return path


@pytest.fixture(scope="module")
def emnist_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_emnist_h5(
        tmp_path_factory.mktemp("data") / "emnist.h5", {"train": 100, "val": 20}, classes=10, seed=0
    )


@pytest.fixture(scope="module")
def lines_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "emnist_lines.h5"
    return _write_lines_h5(path, {"train": 768, "val": 128}, classes=10, max_length=4, seed=1)


def _read_tsv(path: Path) -> list[float]:
    with open(path) as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return [float(row[-1]) for row in rows[1:]]  # under the header "step <name>"


# --- DeviceLoader and augmentation ------------------------------------------------------------------


def _loader(n: int = 103, **kwargs: object) -> DeviceLoader:
    images = torch.arange(n, dtype=torch.int64).remainder(256).to(torch.uint8)[:, None, None].expand(n, 4, 5)
    options = {"batch_size": 10, "shuffle": True, "seed": 3, "drop_last": False, **kwargs}
    return DeviceLoader(images.contiguous(), torch.arange(n), **options)  # type: ignore[arg-type]


def _epoch_indices(loader: DeviceLoader) -> list[int]:
    return [i for _, idx in loader for i in idx.tolist()]


def test_loader_visits_every_example_once_with_float_batches() -> None:
    loader = _loader()
    assert len(loader) == 11  # ceil(103 / 10)
    batches = list(loader)
    assert len(batches) == 11
    x, idx = batches[0]
    assert x.shape == (10, 1, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0, 0], idx.float() / 255)  # each row carries its own index
    assert float(min(b[0].min() for b in batches)) >= 0.0 and float(max(b[0].max() for b in batches)) <= 1.0
    seen = [i for _, idx in batches for i in idx.tolist()]
    assert sorted(seen) == list(range(103))
    assert seen != list(range(103))  # shuffled


def test_loader_order_is_seeded_and_changes_per_epoch() -> None:
    first, again = _loader(), _loader()
    epoch0, epoch1 = _epoch_indices(first), _epoch_indices(first)
    assert _epoch_indices(again) == epoch0  # same seed, same first epoch
    assert epoch1 != epoch0 and sorted(epoch1) == sorted(epoch0)
    again.set_epoch(1)  # what Lightning calls through .sampler
    assert _epoch_indices(again) == epoch1
    assert _epoch_indices(_loader(seed=4)) != epoch0
    assert _epoch_indices(_loader(shuffle=False)) == list(range(103))


def test_loader_drop_last_and_rank_shards() -> None:
    dropped = _loader(drop_last=True)
    assert len(dropped) == 10 and all(len(idx) == 10 for _, idx in dropped)
    shards = [_epoch_indices(_loader(batch_size=7, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [34, 34, 34]  # 103 // 3 each: equal steps on every rank
    assert len(set().union(*map(set, shards))) == 102  # disjoint
    with pytest.raises(ValueError, match="rank"):
        _loader(rank=3, world_size=3)


def test_augment_batch_keeps_shape_and_range_and_changes_images(emnist_h5: Path) -> None:
    char_warp = augmentation(train_params())  # params.yaml's train_cnn warp
    assert char_warp is not None
    with h5py.File(emnist_h5) as f:
        x = torch.from_numpy(f["val/images"][:64]).unsqueeze(1).float() / 255
    out = augment_batch(x, torch.Generator().manual_seed(0), char_warp)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert (out - x).abs().mean() > 0.02  # really moved
    geometry = augment_batch(x, torch.Generator().manual_seed(0), dataclasses.replace(char_warp, stroke=0.0))
    assert torch.allclose(geometry.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.35)  # mild: the ink stays
    ratio = out.sum((1, 2, 3)) / x.sum((1, 2, 3))  # the stroke width changes it by design (these glyphs are thin)
    assert float(ratio.min()) > 0.4 and float(ratio.max()) < 2.5 and float(ratio.std()) > 0.05
    again = augment_batch(x, torch.Generator().manual_seed(0), char_warp)
    assert torch.equal(out, again)  # seeded
    zero = Augmentation((0.0, 0.0), (0.0, 0.0), 0.0, slant=0.0, elastic_alpha=0.0, elastic_sigma=4.0, stroke=0.0)
    still = augment_batch(x, torch.Generator().manual_seed(0), zero)
    assert torch.allclose(still, x, atol=1e-5)  # zero bounds: the warp is the identity
    lines = torch.rand(4, 1, 28, 224)
    assert augment_batch(lines, torch.Generator().manual_seed(0), char_warp).shape == lines.shape


def test_datamodule_serves_int64_targets_and_config(emnist_h5: Path) -> None:
    warp = augmentation(train_params())
    dm = EmnistDataModule(emnist_h5, batch_size=100, seed=0, augment=warp)
    assert dm.config() == {"input_dims": (1, 28, 28), "output_dims": (1,), "mapping": list(EMNIST_CLASSES)}
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.drop_last and not val.drop_last and train.augment == warp is not None and val.augment is None
    x, y = next(iter(train))
    assert x.shape == (100, 1, 28, 28) and y.dtype == torch.int64
    assert sum(len(y) for _, y in val) == 10 * 20


# --- training runs ----------------------------------------------------------------------------------


def test_resolve_hardware_defaults_to_cpu_float32_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    hardware = resolve_hardware(train_params())
    assert (hardware.accelerator, hardware.precision, hardware.deterministic) == ("cpu", "32-true", True)


def test_char_model_learns_from_rendered_glyphs(
    emnist_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = model_params(num_blocks=2, width=16, dropout=0.1)
    run = train_params(epochs=10, batch_size=64, lr=3e-3, seed=0)  # 10 x 15 = 150 steps
    metrics = train(emnist_h5, model, run, checkpoint_path=tmp_path / "cnn.pt", log_dir=tmp_path / "live")
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    print("char metrics:", metrics)
    assert len(progress) == 10 and progress[-1].startswith("epoch 10/10 step 150 ")  # stderr is no tty here
    assert f"val/acc={metrics['val/acc']:.4g}" in progress[-1]
    assert set(metrics) == {"val/acc", "val/loss"}
    assert metrics["val/acc"] > 0.5  # chance is 1/10
    losses = _read_tsv(tmp_path / "live/plots/metrics/train/loss.tsv")
    assert len(losses) == run.epochs and losses[-1] < 0.7 * losses[0]
    loaded = load_checkpoint(tmp_path / "cnn.pt", expected_kind="char")
    # the arch and the keys it read: the section's cnn and mlp sizes mean nothing to a ResNet
    assert loaded.model_kwargs == {"arch": "resnet", "num_blocks": 2, "width": 16, "dropout": 0.1, "num_classes": 62}
    assert loaded.extra["val_metrics"] == metrics


def test_line_model_learns_to_read(lines_h5: Path, tmp_path: Path) -> None:
    model = line_model_params(width=16, fc_dim=64, dropout=0.0)
    # On the CPU even with a GPU present: the check below recomputes the CER in float32 on the CPU.
    run = train_params(epochs=6, batch_size=32, lr=5e-3, seed=0, augment=False, accelerator="cpu")  # 144 steps
    with h5py.File(lines_h5) as f:
        x = torch.from_numpy(f["val/images"][:]).unsqueeze(1).float() / 255
        targets = labels_to_texts(torch.from_numpy(f["val/labels"][:]), torch.from_numpy(f["val/lengths"][:]))

    def cer_of(net: torch.nn.Module) -> float:
        cropped, steps = crop_lines(x, model.window_width, model.window_stride)  # as training reads lines
        with torch.no_grad():
            preds = [indices_to_text(row) for row in greedy_decode(net.eval()(cropped, steps), steps)]
        return character_error_rate(preds, targets)

    torch.manual_seed(0)
    untrained = cer_of(line_network(num_classes=len(LINE_TOKENS), **line_arch_kwargs("ctc", dataclasses.asdict(model))))
    metrics = train(lines_h5, model, run, checkpoint_path=tmp_path / "line.pt", log_dir=tmp_path / "live")
    print("line metrics:", metrics, "untrained CER:", untrained)
    assert set(metrics) == {"val/cer", "val/line_acc", "val/loss"}
    assert metrics["val/cer"] < 0.7 * untrained
    trained = load_checkpoint(tmp_path / "line.pt", expected_kind="line").model
    assert cer_of(trained) == pytest.approx(metrics["val/cer"], abs=1e-6)  # logged CER = corpus CER of the weights


@pytest.mark.parametrize("head", ["lstm", "transformer"])
def test_line_model_with_a_context_head_learns_and_records_it(lines_h5: Path, tmp_path: Path, head: str) -> None:
    model = line_model_params(width=16, fc_dim=64, dropout=0.0, head=head)
    run = train_params(epochs=6, batch_size=32, lr=5e-3, seed=0, augment=False, accelerator="cpu")
    with h5py.File(lines_h5) as f:
        x = torch.from_numpy(f["val/images"][:]).unsqueeze(1).float() / 255
    torch.manual_seed(0)
    untrained = line_network(num_classes=len(LINE_TOKENS), **line_arch_kwargs("ctc", dataclasses.asdict(model))).eval()
    cropped, steps = crop_lines(x, model.window_width, model.window_stride)
    with torch.no_grad():
        preds = [indices_to_text(row) for row in greedy_decode(untrained(cropped, steps), steps)]
    with h5py.File(lines_h5) as f:
        targets = labels_to_texts(torch.from_numpy(f["val/labels"][:]), torch.from_numpy(f["val/lengths"][:]))
    untrained_cer = character_error_rate(preds, targets)
    metrics = train(lines_h5, model, run, checkpoint_path=tmp_path / "line.pt", log_dir=tmp_path / "live")
    print(head, "line metrics:", metrics, "untrained CER:", untrained_cer)
    assert metrics["val/cer"] < 0.7 * untrained_cer
    loaded = load_checkpoint(tmp_path / "line.pt", expected_kind="line")
    assert loaded.model_kwargs["head"] == head and loaded.model.head == head


def test_same_params_give_identical_runs_and_outputs(emnist_h5: Path, tmp_path: Path) -> None:
    model = model_params(num_blocks=1, width=8)
    run = train_params(epochs=2, batch_size=64, limit_train_batches=0.25, seed=7, accelerator="cpu")
    first = train(emnist_h5, model, run, checkpoint_path=tmp_path / "a.pt", log_dir=tmp_path / "a")
    second = train(emnist_h5, model, run, checkpoint_path=tmp_path / "b.pt", log_dir=tmp_path / "b")
    assert first == second
    a, b = load_checkpoint(tmp_path / "a.pt").model.state_dict(), load_checkpoint(tmp_path / "b.pt").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((tmp_path / "a/metrics.json").read_text())
    assert summary["val"]["acc"] == pytest.approx(first["val/acc"]) and summary["step"] == 2 * 3 - 1
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"metrics.json", "plots"}  # no dvc.yaml, no report
    assert len(_read_tsv(tmp_path / "a/plots/metrics/val/loss.tsv")) == run.epochs
    third = train(
        emnist_h5, model, dataclasses.replace(run, seed=8), checkpoint_path=tmp_path / "c.pt", log_dir=tmp_path / "c"
    )
    assert third != first


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_the_lab_archs_learn_under_the_same_recipe_and_evaluate_reads_them(tmp_path: Path, arch: str) -> None:
    """The labs' networks go through the stage's path unchanged (params, augmentation, checkpoint) and the
    evaluate stage's reader rebuilds them from the checkpoint alone."""
    data = _write_emnist_h5(tmp_path / "emnist.h5", {"train": 60, "val": 20, "test": 20}, classes=10, seed=2)
    model = model_params(arch=arch, conv_dim=16, fc_dim=64, fc1_dim=256, fc2_dim=64, dropout=0.1)
    run = train_params(epochs=6, batch_size=64, lr=3e-3, seed=0, accelerator="cpu")  # 6 x 9 = 54 steps
    metrics = train(data, model, run, checkpoint_path=tmp_path / "cnn.pt", log_dir=tmp_path / "live")
    print(arch, "metrics:", metrics)
    assert metrics["val/acc"] > 0.3  # chance is 1/10
    loaded = load_checkpoint(tmp_path / "cnn.pt", expected_kind="char")
    assert loaded.model_kwargs == {**arch_kwargs(arch, dataclasses.asdict(model)), "num_classes": 62}
    assert loaded.extra["train"]["overfit_batches"] == 0
    test = evaluate_char(tmp_path / "cnn.pt", data, device="cpu")
    assert test.accuracy > 0.3 and len(test.y_true) == 10 * 20


class _SeenBatches(pl.Callback):
    """The labels of every train and val batch, by epoch: what overfit_batches must hold fixed."""

    def __init__(self) -> None:
        self.train: dict[int, list[list[int]]] = defaultdict(list)
        self.val: dict[int, list[list[int]]] = defaultdict(list)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.train[trainer.current_epoch].append(batch[1].tolist())

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, *args) -> None:
        self.val[trainer.current_epoch].append(batch[1].tolist())


def _fit_seeing_batches(data: Path, model: ModelParams | LineModelParams, **trainer_args: object) -> _SeenBatches:
    """Three epochs through training.py's data module and Lightning module, with a Trainer that records batches."""
    run = train_params(batch_size=32, augment=False, accelerator="cpu")
    kind = "line" if isinstance(model, LineModelParams) else "char"
    datamodule = build_datamodule(data, model, run)
    classes = len(datamodule.config()["mapping"])
    network = MODEL_BUILDERS[kind](**network_kwargs(model, num_classes=classes))
    seen = _SeenBatches()
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False, callbacks=[seen],
        **trainer_args,
    )  # fmt: skip
    module = build_lightning_module(kind, network, run, num_classes=classes, arch=model.arch)
    trainer.fit(module, datamodule=datamodule)
    return seen


@pytest.mark.parametrize("kind", ["char", "line"])
def test_overfit_batches_trains_on_the_same_first_batches_every_epoch(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Lightning's overfit_batches turns shuffling off by swapping a torch DataLoader's sampler, which a
    DeviceLoader does not have: the data modules stop shuffling themselves, and unshuffled loaders show Lightning
    the SequentialSampler it looks for, so it neither warns nor leaves a shuffled loader running."""
    data = request.getfixturevalue("emnist_h5" if kind == "char" else "lines_h5")
    model = (
        model_params(arch="mlp", fc1_dim=32, fc2_dim=16) if kind == "char" else line_model_params(width=8, fc_dim=16)
    )
    with h5py.File(data) as f:
        first = {split: np.asarray(f[f"{split}/labels"][:64], dtype=np.int64).tolist() for split in ("train", "val")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = _fit_seeing_batches(data, model, overfit_batches=2)
    assert sorted(seen.train) == [0, 1, 2]
    for epoch in range(3):  # the file's first two batches, in order, every epoch; validation on as many
        assert [row for batch in seen.train[epoch] for row in batch] == first["train"]
        assert len(seen.train[epoch]) == 2
        assert [row for batch in seen.val[epoch] for row in batch] == first["val"]
    assert not [str(w.message) for w in caught if "overfit" in str(w.message) or "shuffl" in str(w.message)]
    control = _fit_seeing_batches(data, model, limit_train_batches=2)  # two batches an epoch, shuffled: they change
    assert control.train[0] != control.train[1] != control.train[2]


def test_overfit_batches_drives_the_training_loss_down(emnist_h5: Path, tmp_path: Path) -> None:
    """The labs' sanity check through the stage's path: a network that cannot memorise two batches has a bug.
    Set up as a memorisation test: no augmentation (the same pixels every epoch), no label smoothing or dropout
    (they put a floor under the loss), a constant lr. Measured: the last epoch's loss is 0.016 of the first."""
    model = model_params(arch="mlp", fc1_dim=128, fc2_dim=64, dropout=0.0)
    run = train_params(
        epochs=30, batch_size=64, lr=3e-3, schedule="constant", label_smoothing=0.0, augment=False, overfit_batches=2,
        seed=0, accelerator="cpu",
    )  # fmt: skip
    train(emnist_h5, model, run, checkpoint_path=tmp_path / "cnn.pt", log_dir=tmp_path / "live")
    losses = _read_tsv(tmp_path / "live/plots/metrics/train/loss.tsv")
    print("overfit losses:", losses[0], losses[-1])
    assert len(losses) == 30 and losses[-1] < 0.1 * losses[0]
    extra = load_checkpoint(tmp_path / "cnn.pt").extra
    assert extra["global_step"] == 30 * 2 and extra["train"]["overfit_batches"] == 2  # two steps an epoch


def test_missing_data_fails_before_writing_anything(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        train(
            tmp_path / "missing.h5",
            model_params(),
            train_params(),
            checkpoint_path=tmp_path / "cnn.pt",
            log_dir=tmp_path / "live",
        )
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("warmup_fraction", [0.1, 0.3])
def test_onecycle_peaks_after_the_warmup_fraction_of_the_steps(warmup_fraction: float) -> None:
    """The learning rate rises to `lr` over warmup_fraction of the run, then falls to near zero."""
    model = torch.nn.Linear(4, 2)
    config = configure_adamw(
        model,
        AdamWSettings(lr=0.01, weight_decay=0.0, schedule="onecycle", warmup_fraction=warmup_fraction),
        total_steps=100,
    )
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = max(range(100), key=rates.__getitem__)
    assert abs(peak - warmup_fraction * 100) <= 1
    assert rates[peak] == pytest.approx(0.01)
    assert rates[0] < 0.01 / 10 and rates[-1] < 0.01 / 100


@pytest.mark.parametrize("total_steps", [1, 3, 4, 5, 10, 19])
def test_onecycle_survives_runs_of_a_few_steps(total_steps: int) -> None:
    """A tiny run (few batches, warm-up of 10 %) trains instead of dividing by zero in OneCycleLR."""
    model = torch.nn.Linear(4, 2)
    config = configure_adamw(
        model,
        AdamWSettings(lr=0.01, weight_decay=0.0, schedule="onecycle", warmup_fraction=0.1),
        total_steps=total_steps,
    )
    optimizer = config["optimizer"]
    scheduler = config["lr_scheduler"]["scheduler"] if "lr_scheduler" in config else None
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    assert all(0 < rate <= 0.01 * (1 + 1e-9) for rate in rates)
    assert (scheduler is None) == (total_steps < 4)
    if scheduler is not None:
        assert max(rates) == pytest.approx(0.01) and rates[0] < 0.01 and rates[-1] < 0.01


def test_train_params_reach_the_optimizer_settings() -> None:
    run = train_params(lr=0.02, weight_decay=0.01, schedule="constant", warmup_fraction=0.25)
    assert adamw_settings(run) == AdamWSettings(lr=0.02, weight_decay=0.01, schedule="constant", warmup_fraction=0.25)


# --- what a checkpoint records of its data, and predict reading by it -------------------------------


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_a_line_model_records_its_lines_and_predict_reads_at_its_pitch(tmp_path: Path, overlap: float) -> None:
    """Lines drawn by the pipeline's own code at one overlap, a line model trained on them: the checkpoint
    records the pitch measured on its lines, and predict lays glyphs out at that pitch (14 px at 0.5),
    where it used to read every model at the 23 px of the default overlaps."""
    from PIL import Image, ImageDraw

    from text_recognizer.data.emnist_lines import build_emnist_lines
    from text_recognizer.data.sources import synthesize_brown
    from text_recognizer.reading.predict import load_model, read_array

    emnist = _write_emnist_h5(tmp_path / "emnist.h5", {"train": 4, "val": 2, "test": 2}, classes=62, seed=3)
    lines = build_emnist_lines(
        emnist,
        synthesize_brown(tmp_path / "brown.zip", seed=0),
        tmp_path / "emnist_lines.h5",
        max_length=8,
        min_overlap=overlap,
        max_overlap=overlap,
        num_train=64,
        num_val=16,
        num_test=0,
        seed=0,
        text_val_fraction=0.1,
        text_test_fraction=0.1,
        text_seed=0,
        random_text_share=0.0,
    )
    assert lines["lines"]["train"] == 64
    model = line_model_params(width=8, fc_dim=16, head="none")
    run = train_params(epochs=1, batch_size=32, seed=0, augment=False, accelerator="cpu")
    lines_h5, checkpoint = tmp_path / "emnist_lines.h5", tmp_path / "line.pt"
    train(lines_h5, model, run, checkpoint_path=checkpoint, log_dir=tmp_path / "m")

    loaded = load_model(tmp_path / "line.pt", device="cpu")
    drawn = loaded.extra["lines"]
    pitch = round(GLYPH_SIZE * (1 - overlap))
    assert drawn["pitch"] == pitch and (drawn["min_overlap"], drawn["max_overlap"]) == (overlap, overlap)
    assert 12 <= drawn["ink_height"] <= GLYPH_SIZE and 1 <= drawn["stroke_width"] <= 8

    img = Image.new("L", (300, 60), 255)
    for x in (20, 60, 100):
        ImageDraw.Draw(img).rectangle([x, 10, x + 8, 50], fill=0)
    cells = read_array(np.asarray(img), loaded).model_input
    ink_cols = np.flatnonzero(cells.max(axis=0) > 128)
    starts = ink_cols[np.flatnonzero(np.diff(ink_cols, prepend=-10) > 1)]
    assert np.diff(starts).tolist() == [pitch, pitch]


def test_networks_train_in_channels_last_on_the_cpu_too():
    """oneDNN runs channels_last convolutions and batch norms ~1.2-1.4x faster (benchmarks/memory_format.py)."""
    from text_recognizer.models.line_cnn import LineCNN
    from text_recognizer.training import Hardware, prepare_network

    network = LineCNN(width=8, fc_dim=16, window_width=28, window_stride=8, dropout=0.0, head="none", stem="strided")
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
    assert convs and not all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    prepared = prepare_network(network, Hardware(accelerator="cpu", precision="32-true"), compile=False)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert prepared(torch.rand(2, 1, 28, 84)).shape[0] == 2
