"""Networks (shapes, downsampling rule, channels_last, bf16) and checkpoint round trips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from text_recognizer import params as P
from text_recognizer.line_geometry import (
    RIGHT_CONTEXT,
    crop_lines,
    crop_width,
    ink_extents,
    line_widths,
    output_length,
    output_lengths,
)
from text_recognizer.metadata import EMNIST_CLASSES, LINE_TOKENS
from text_recognizer.models.char_archs import CHAR_NETWORKS, arch_kwargs, char_network
from text_recognizer.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_with_extra
from text_recognizer.models.cnn import CNN
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.models.mlp import MLP
from text_recognizer.models.resnet import ResNetClassifier, stage_sizes

# The networks have no defaults (training passes params.yaml's sections); these tests' base networks, which
# each test changes where it needs to.
CHAR_NET = {"num_blocks": 3, "width": 64, "dropout": 0.2}
LINE_NET = {
    "width": 64,
    "window_width": 28,
    "window_stride": 8,
    "fc_dim": 256,
    "dropout": 0.2,
    "head": "none",
    "stem": "strided",
}
# A whole model section, every arch's sizes small (what `model.arch` picks from).
MODEL_SECTION = {**CHAR_NET, "width": 8, "conv_dim": 8, "fc_dim": 16, "fc1_dim": 32, "fc2_dim": 16}


def resnet(**changes) -> ResNetClassifier:
    return ResNetClassifier(**{**CHAR_NET, **changes})


def line_cnn(**changes) -> LineCNN:
    return LineCNN(**{**LINE_NET, **changes})


@pytest.mark.parametrize(
    ("num_blocks", "sizes"),
    [(1, [1]), (2, [1, 1]), (3, [1, 1, 1]), (4, [2, 1, 1]), (8, [3, 3, 2])],
)
def test_stage_sizes(num_blocks, sizes):
    assert stage_sizes(num_blocks) == sizes


@pytest.mark.parametrize("num_blocks", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("width", [8, 16])
def test_resnet_output_shape_and_downsampling(num_blocks, width):
    model = resnet(num_blocks=num_blocks, width=width)
    features = model.blocks(model.stem(torch.rand(3, 1, 28, 28)))
    stages = len(stage_sizes(num_blocks))
    side = {1: 14, 2: 7, 3: 4}[stages]  # after the stride-2 stem
    assert features.shape == (3, width * 2 ** (stages - 1), side, side)
    assert len(model.blocks) == num_blocks
    assert model.head.in_features == model.out_channels * 4 * 4  # a 4x4 grid, not one global average
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 62)


def test_resnet_rejects_zero_blocks():
    with pytest.raises(ValueError, match="num_blocks"):
        resnet(num_blocks=0)


def test_resnet_channels_last_and_bf16_match_fp32():
    torch.manual_seed(0)
    model = resnet(num_blocks=2, width=8).eval()
    x = torch.rand(4, 1, 28, 28)
    expected = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    got = model_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model_cl(x.to(memory_format=torch.channels_last))
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("image_width", [28, 28 * 4, 28 * 8 + 6, 28 * 32, 57])
@pytest.mark.parametrize(("window_width", "window_stride"), [(28, 8), (28, 28), (16, 2), (20, 6)])
def test_line_cnn_output_length(image_width, window_width, window_stride):
    model = line_cnn(width=8, fc_dim=8, window_width=window_width, window_stride=window_stride).eval()
    out = model(torch.rand(2, 1, 28, image_width))
    expected = (image_width - window_width) // window_stride + 1
    assert out.shape == (2, len(LINE_TOKENS), expected)
    assert model.output_length(image_width) == expected == output_length(image_width, window_width, window_stride)


def test_line_cnn_default_is_32_chars_in_109_steps():
    model = line_cnn(width=8, fc_dim=8).eval()
    assert model(torch.rand(1, 1, 28, 28 * 32)).shape == (1, 65, 109)


def test_line_cnn_windows_are_local():
    """Changing pixels far right of window 0 (beyond its receptive field) leaves output 0 unchanged."""
    torch.manual_seed(0)
    model = line_cnn(width=8, fc_dim=8).eval()
    x = torch.rand(1, 1, 28, 28 * 4)
    y = x.clone()
    y[..., 28 + 8 :] = torch.rand_like(y[..., 28 + 8 :])
    out_x, out_y = model(x), model(y)
    torch.testing.assert_close(out_x[..., 0], out_y[..., 0])
    assert not torch.allclose(out_x[..., -1], out_y[..., -1])


@pytest.mark.parametrize(("stem", "reach"), [("full", 5), ("strided", 6)])
def test_line_cnn_stems_reach_exactly_their_right_context(stem, reach):
    """Window 0 reads pixels [0, 28): its output hears pixel 27 + reach and nothing past it (RIGHT_CONTEXT is the
    larger reach, so a crop keeps what every stem reads)."""
    torch.manual_seed(0)
    model = _shake_batchnorm(line_cnn(width=8, fc_dim=8, stem=stem))
    x = torch.rand(1, 1, 28, 28 * 3)
    beyond, last = x.clone(), x.clone()
    beyond[..., 28 + reach :] = torch.rand_like(beyond[..., 28 + reach :])
    last[..., 27 + reach] = torch.rand_like(last[..., 27 + reach]) + 1.0
    with torch.no_grad():
        out, out_beyond, out_last = model(x)[..., 0], model(beyond)[..., 0], model(last)[..., 0]
    torch.testing.assert_close(out_beyond, out, rtol=0, atol=0)
    assert not torch.allclose(out_last, out)
    assert reach <= RIGHT_CONTEXT


def test_line_cnn_validation():
    with pytest.raises(ValueError, match="window_width"):
        line_cnn(window_width=27)
    with pytest.raises(ValueError, match="window_stride"):
        line_cnn(window_stride=3)
    with pytest.raises(ValueError, match="stem must be one of full, strided"):
        line_cnn(stem="pooled")  # type: ignore[arg-type]
    model = line_cnn(width=8, fc_dim=8).eval()
    with pytest.raises(ValueError, match="narrower than window_width"):
        model(torch.rand(1, 1, 28, 20))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, W\)"):
        model(torch.rand(1, 1, 32, 64))


def test_line_cnn_channels_last_and_bf16():
    model = line_cnn(width=8, fc_dim=8).eval().to(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 28, 28 * 4).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (2, 65, 11)
    assert torch.isfinite(out.float()).all()


def test_checkpoint_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    kwargs = {"num_blocks": 2, "width": 8, "dropout": 0.1}
    model = resnet(**kwargs)
    model.train()
    model(torch.rand(8, 1, 28, 28))  # move the BN running stats away from their defaults
    model.eval()
    path = tmp_path / "models" / "cnn.pt"
    save_checkpoint(
        path,
        kind="char",
        model_kwargs=kwargs,
        state_dict=model.state_dict(),
        mapping=list(EMNIST_CLASSES),
        extra={"val_acc": 0.5},
    )
    loaded = load_checkpoint(path)
    assert loaded.kind == "char"
    assert loaded.mapping == list(EMNIST_CLASSES)
    assert loaded.model_kwargs == kwargs
    assert loaded.extra == {"val_acc": 0.5}
    assert not loaded.model.training
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["cnn.pt"]  # no temporary left behind


def test_checkpoint_strips_compile_prefix(tmp_path):
    model = line_cnn(width=8, fc_dim=8).eval()
    state = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(
        tmp_path / "line.pt",
        kind="line",
        model_kwargs={**LINE_NET, "width": 8, "fc_dim": 8},
        state_dict=state,
        mapping=LINE_TOKENS,
    )
    raw = torch.load(tmp_path / "line.pt", weights_only=True)
    assert not any("_orig_mod" in k for k in raw["state_dict"])
    loaded = load_checkpoint(tmp_path / "line.pt", expected_kind="line")
    x = torch.rand(1, 1, 28, 112)
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


# The state_dict keys of every line checkpoint written before the context heads existed.
_OLD_LINE_KEYS = [
    "backbone.0.weight",
    *(f"backbone.1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    "backbone.3.weight",
    *(f"backbone.4.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    "backbone.6.conv1.weight",
    *(f"backbone.6.bn1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    "backbone.6.conv2.weight",
    *(f"backbone.6.bn2.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    "window.weight",
    *(f"window_bn.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    "classifier.weight",
    "classifier.bias",
]


def _shake_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Random BN shifts: a blank column then maps to non-zero activations, unlike the convs' zero padding."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.bias.data.uniform_(-1, 1)
            module.running_mean.uniform_(-0.5, 0.5)
    return model.eval()


def test_old_line_checkpoint_loads_as_head_none_with_the_old_outputs(tmp_path):
    """A checkpoint without `head` (all written before it) loads strictly and computes what the old forward did:
    no context head, and the full-resolution stem that every LineCNN had before `stem`."""
    torch.manual_seed(0)
    model = _shake_batchnorm(line_cnn(width=8, fc_dim=8, stem="full"))
    assert list(model.state_dict()) == _OLD_LINE_KEYS
    old_kwargs = {"width": 8, "window_width": 28, "window_stride": 8, "fc_dim": 8, "dropout": 0.2, "num_classes": 65}
    save_checkpoint(
        tmp_path / "old.pt", kind="line", model_kwargs=old_kwargs, state_dict=model.state_dict(), mapping=LINE_TOKENS
    )
    loaded = load_checkpoint(tmp_path / "old.pt", expected_kind="line").model
    assert loaded.head == "none" and loaded.context is None and loaded.stem == "full"
    x = torch.rand(2, 1, 28, 115)  # odd, (W - 28) % 8 == 7: the extra half-column window is no output
    with torch.no_grad():  # the forward of the LineCNN before the heads, from the same modules
        old = model.classifier(model.dropout(model.relu(model.window_bn(model.window(model.backbone(x))))))
        old = old[:, :, 0, : model.output_length(x.shape[3])]
        torch.testing.assert_close(loaded(x), old, rtol=0, atol=0)


@pytest.mark.parametrize("head", ["lstm", "transformer"])
def test_line_cnn_context_heads_shapes_checkpoint_and_context(tmp_path, head):
    torch.manual_seed(0)
    model = line_cnn(width=8, fc_dim=16, head=head).eval()
    x = torch.rand(3, 1, 28, 28 * 6)
    out = model(x)
    assert out.shape == (3, len(LINE_TOKENS), model.output_length(x.shape[3]))
    kwargs = {**LINE_NET, "width": 8, "fc_dim": 16, "head": head}
    save_checkpoint(
        tmp_path / "l.pt", kind="line", model_kwargs=kwargs, state_dict=model.state_dict(), mapping=LINE_TOKENS
    )
    loaded = load_checkpoint(tmp_path / "l.pt", expected_kind="line")
    assert loaded.model_kwargs["head"] == head and loaded.model.head == head
    torch.testing.assert_close(loaded.model(x), out, rtol=0, atol=0)
    # Unlike the bare windows, output 0 now hears about ink far to its right.
    y = x.clone()
    y[..., 28 * 4 :] = torch.rand_like(y[..., 28 * 4 :])
    assert not torch.allclose(model(y)[..., 0], out[..., 0])
    with pytest.raises(ValueError, match="head"):
        line_cnn(head="gru")  # type: ignore[arg-type]


def test_line_widths_sit_on_the_window_lattice():
    images = torch.zeros(4, 28, 224, dtype=torch.uint8)
    images[1, 5, 32] = 1  # ink up to column 32: extent 33
    images[2, :, :105] = 200
    images[3, 0, 223] = 9  # ink in the last column
    extents = ink_extents(images)
    assert extents.tolist() == [0, 33, 105, 224]
    widths = line_widths(extents, 224, window_width=28, window_stride=8)
    # extent + 4 px of margin, rounded up to 28 + 8k; a blank line still gets one window; never past the image
    assert widths.tolist() == [28, 44, 116, 224]
    assert output_lengths(widths, 28, 8).tolist() == [output_length(w, 28, 8) for w in widths.tolist()]
    assert crop_width(widths[:3], 224, 28, 8) == 124  # 116 + RIGHT_CONTEXT, up to the lattice
    assert crop_width(widths, 224, 28, 8) == 224


@pytest.mark.parametrize("head", ["none", "lstm", "transformer"])
@pytest.mark.parametrize("stem", ["full", "strided"])
@pytest.mark.parametrize(("window_width", "window_stride"), [(28, 8), (20, 2)])
def test_cropped_lines_give_the_full_width_logits_within_their_lengths(head, stem, window_width, window_stride):
    """Cropping a batch to its widest line changes no logit a line owns (eval mode: BN without batch statistics)."""
    torch.manual_seed(0)
    model = _shake_batchnorm(
        line_cnn(width=8, fc_dim=16, window_width=window_width, window_stride=window_stride, head=head, stem=stem)
    )
    x = torch.zeros(4, 1, 28, 28 * 8)
    for i, extent in enumerate([31, 97, 150, 60]):  # the widest stays well inside the image: the crop binds
        x[i, 0, 4:24, :extent] = torch.rand(20, extent)
    cropped, lengths = crop_lines(x, window_width, window_stride)
    assert cropped.shape[-1] < x.shape[-1] and cropped.shape[-1] >= 150 + RIGHT_CONTEXT
    full_logits, cropped_logits = model(x, lengths), model(cropped, lengths)
    for i, steps in enumerate(lengths.tolist()):
        torch.testing.assert_close(cropped_logits[i, :, :steps], full_logits[i, :, :steps], rtol=1e-5, atol=1e-5)


# --- the character archs (model.arch) --------------------------------------------------------------


def test_the_archs_params_accept_are_the_ones_built():
    assert tuple(CHAR_NETWORKS) == P.CHAR_ARCHS == ("resnet", "cnn", "mlp")


@pytest.mark.parametrize("arch", P.CHAR_ARCHS)
def test_every_arch_maps_glyphs_to_62_logits(arch):
    kwargs = arch_kwargs(arch, MODEL_SECTION)
    model = char_network(**kwargs).eval()
    assert isinstance(model, CHAR_NETWORKS[arch])
    x = torch.rand(5, 1, 28, 28)
    assert model(x).shape == (5, 62)
    assert model.head.out_features == 62
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as a GPU trains it: bf16 autocast, channels_last
        low = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert low.shape == (5, 62) and torch.isfinite(low.float()).all()


def test_arch_kwargs_keep_only_the_keys_the_arch_reads():
    assert arch_kwargs("resnet", MODEL_SECTION) == {"arch": "resnet", "num_blocks": 3, "width": 8, "dropout": 0.2}
    assert arch_kwargs("cnn", MODEL_SECTION) == {"arch": "cnn", "conv_dim": 8, "fc_dim": 16, "dropout": 0.2}
    assert arch_kwargs("mlp", MODEL_SECTION) == {"arch": "mlp", "fc1_dim": 32, "fc2_dim": 16, "dropout": 0.2}
    with pytest.raises(ValueError, match=r"arch must be one of \['cnn', 'mlp', 'resnet'\], got 'vit'"):
        arch_kwargs("vit", MODEL_SECTION)


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_lab_networks_have_the_labs_layers_at_params_yaml_sizes():
    """params.yaml's sizes are the labs' (conv_dim 64, fc_dim 128; fc1 1024, fc2 128): the layer counts follow."""
    section = dataclasses.asdict(P.load_all(Path(__file__).resolve().parents[1] / "params.yaml").model)
    cnn = char_network(**{**arch_kwargs("cnn", section), "num_classes": 62})
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 64, (3, 3)), (64, 64, (3, 3))]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in cnn.modules()) == 1
    assert (cnn.fc.in_features, cnn.fc.out_features) == (64 * 14 * 14, 128)
    assert _num_params(cnn) == (9 * 64 + 64) + (64 * 64 * 9 + 64) + (12544 * 128 + 128) + (128 * 62 + 62)
    mlp = char_network(**{**arch_kwargs("mlp", section), "num_classes": 62})
    linears = [(m.in_features, m.out_features) for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == [(784, 1024), (1024, 128), (128, 62)]
    assert not any(isinstance(m, torch.nn.Conv2d) for m in mlp.modules())


def test_the_lab_networks_refuse_bad_sizes_and_inputs():
    with pytest.raises(ValueError, match="conv_dim"):
        CNN(conv_dim=0, fc_dim=8, dropout=0.0)
    with pytest.raises(ValueError, match="fc1_dim"):
        MLP(fc1_dim=8, fc2_dim=0, dropout=0.0)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        MLP(fc1_dim=8, fc2_dim=8, dropout=0.0)(torch.rand(2, 1, 28, 56))


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_lab_arch_checkpoint_round_trip_identical_outputs(tmp_path, arch):
    torch.manual_seed(0)
    kwargs = {**arch_kwargs(arch, MODEL_SECTION), "num_classes": 62}
    model = char_network(**kwargs).eval()
    save_checkpoint(
        tmp_path / "cnn.pt", kind="char", model_kwargs=kwargs, state_dict=model.state_dict(), mapping=EMNIST_CLASSES
    )
    loaded = load_checkpoint(tmp_path / "cnn.pt", expected_kind="char")
    assert loaded.model_kwargs == kwargs and loaded.model_kwargs["arch"] == arch
    assert type(loaded.model) is CHAR_NETWORKS[arch] and not loaded.model.training
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


def test_a_char_checkpoint_without_arch_is_a_resnet_and_an_unknown_arch_is_refused(tmp_path):
    """Char checkpoints written before model.arch hold a ResNet; an arch this version lacks names itself."""
    _save_char(tmp_path / "old.pt")
    assert torch.load(tmp_path / "old.pt", weights_only=True)["model_kwargs"].get("arch") is None
    assert type(load_checkpoint(tmp_path / "old.pt").model) is ResNetClassifier
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    payload["model_kwargs"]["arch"] = "vit"
    torch.save(payload, tmp_path / "vit.pt")
    with pytest.raises(CheckpointError, match=r"cannot build a char model .*arch must be one of"):
        load_checkpoint(tmp_path / "vit.pt")
    mlp = char_network(**arch_kwargs("mlp", MODEL_SECTION))
    cnn_kwargs = arch_kwargs("cnn", MODEL_SECTION)  # weights of one arch under another's kwargs
    save_checkpoint(
        tmp_path / "x.pt", kind="char", model_kwargs=cnn_kwargs, state_dict=mlp.state_dict(), mapping=EMNIST_CLASSES
    )
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(tmp_path / "x.pt")


def _save_char(path):
    save_checkpoint(
        path,
        kind="char",
        model_kwargs={**CHAR_NET, "num_blocks": 1, "width": 8},
        state_dict=resnet(num_blocks=1, width=8).state_dict(),
        mapping=list(EMNIST_CLASSES),
    )


def test_a_reader_bundles_its_glyph_model_and_keeps_it_when_copied_again(tmp_path):
    """evaluate's reader carries the char checkpoint that cuts touching letters: it loads with the same outputs, a
    second save_with_extra keeps it, and only a char checkpoint is taken as one."""
    _save_char(tmp_path / "cnn.pt")
    save_checkpoint(
        tmp_path / "line.pt",
        kind="line",
        model_kwargs={**LINE_NET, "width": 8, "fc_dim": 8},
        state_dict=line_cnn(width=8, fc_dim=8).state_dict(),
        mapping=LINE_TOKENS,
    )
    assert load_checkpoint(tmp_path / "line.pt").glyph_model is None
    save_with_extra(tmp_path / "line.pt", tmp_path / "reader.pt", glyph_model=tmp_path / "cnn.pt", reading={"a": 1})
    save_with_extra(tmp_path / "reader.pt", tmp_path / "again.pt", reading={"a": 2})
    char = load_checkpoint(tmp_path / "cnn.pt")
    x = torch.rand(3, 1, 28, 28)
    for name, reading in (("reader.pt", {"a": 1}), ("again.pt", {"a": 2})):
        loaded = load_checkpoint(tmp_path / name, expected_kind="line")
        assert loaded.extra["reading"] == reading and loaded.glyph_model is not None
        assert loaded.glyph_model.kind == "char" and loaded.glyph_model.mapping == char.mapping
        assert not loaded.glyph_model.model.training
        torch.testing.assert_close(loaded.glyph_model.model(x), char.model(x), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"line\.pt is a line checkpoint; a reader's glyph model needs a char"):
        save_with_extra(tmp_path / "line.pt", tmp_path / "bad.pt", glyph_model=tmp_path / "line.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_checkpoint_wrong_kind_names_path_and_need(tmp_path):
    path = tmp_path / "cnn.pt"
    _save_char(path)
    with pytest.raises(CheckpointError, match=r"cnn\.pt is a char checkpoint; predict needs a line checkpoint"):
        load_checkpoint(path, expected_kind="line", needed_by="predict")


def test_checkpoint_missing_garbage_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt not found"):
        load_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"garbage\.pt is not a readable torch checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt is not a text-recognizer checkpoint"):
        load_checkpoint(foreign)


def test_checkpoint_of_an_older_format_asks_for_retraining(tmp_path):
    path = tmp_path / "cnn.pt"
    model = resnet(width=4)
    save_checkpoint(
        path, kind="char", model_kwargs={**CHAR_NET, "width": 4}, state_dict=model.state_dict(), mapping=EMNIST_CLASSES
    )
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "format": "text-recognizer/1"}, path)
    with pytest.raises(
        CheckpointError, match=r"cnn\.pt was written in checkpoint format 'text-recognizer/1'.*dvc repro"
    ):
        load_checkpoint(path)


def test_checkpoint_mismatched_weights(tmp_path):
    path = tmp_path / "cnn.pt"
    save_checkpoint(
        path,
        kind="char",
        model_kwargs={**CHAR_NET, "num_blocks": 2, "width": 8},  # weights below are of a 1-block model
        state_dict=resnet(num_blocks=1, width=8).state_dict(),
        mapping=list(EMNIST_CLASSES),
    )
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)


def test_checkpoint_rejects_non_json_extra(tmp_path):
    with pytest.raises(TypeError, match="extra"):
        save_checkpoint(
            tmp_path / "x.pt",
            kind="char",
            model_kwargs={},
            state_dict={},
            mapping=list(EMNIST_CLASSES),
            extra={"bad": object()},
        )
    assert not (tmp_path / "x.pt").exists()


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
def test_cuda_channels_last_bf16_training_step_and_cpu_checkpoint(tmp_path):
    from text_recognizer.lit_models.ctc import ctc_loss

    model = resnet(num_blocks=4, width=16).cuda().to(memory_format=torch.channels_last)
    x = torch.rand(64, 1, 28, 28, device="cuda").to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, 62, (64,), device="cuda"))
    loss.backward()
    assert torch.isfinite(loss)
    save_checkpoint(
        tmp_path / "c.pt",
        kind="char",
        model_kwargs={**CHAR_NET, "num_blocks": 4, "width": 16},
        state_dict=model.state_dict(),
        mapping=EMNIST_CLASSES,
    )
    assert all(v.device.type == "cpu" for v in torch.load(tmp_path / "c.pt", weights_only=True)["state_dict"].values())
    assert next(load_checkpoint(tmp_path / "c.pt").model.parameters()).device.type == "cpu"

    line = line_cnn(width=16, fc_dim=32).cuda().to(memory_format=torch.channels_last)
    lx = torch.rand(8, 1, 28, 28 * 32, device="cuda").to(memory_format=torch.channels_last)
    targets = torch.randint(2, 65, (8, 32), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = line(lx)
        closs = ctc_loss(logits, targets, torch.full((8,), 32, device="cuda"))
    assert logits.dtype == torch.bfloat16 and logits.shape == (8, 65, 109)
    assert closs.dtype == torch.float32 and torch.isfinite(closs)
    closs.backward()
