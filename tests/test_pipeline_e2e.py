"""The real DVC pipeline, end to end, on the offline source with tiny settings, in a temporary repo."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch
import yaml
from PIL import Image

from tests.pipeline_repo import PipelineRepo, ran_stages
from text_recognizer.metadata import NUM_EMNIST_CLASSES

pytestmark = pytest.mark.slow

ALL_STAGES = {
    "download_emnist",
    "download_brown",
    "emnist_hdf5",
    "emnist_lines",
    "train_cnn",
    "train_line_cnn",
    "char_lm",
    "evaluate",
}
TINY = {
    "data": {"source": "synthetic", "synthetic_train_per_class": 24, "synthetic_test_per_class": 6},
    "emnist_lines": {"max_length": 8, "num_train": 256, "num_val": 32, "num_test": 32},
    "model": {"num_blocks": 1, "width": 8},
    # Just enough training to learn something, so the models can be checked against untrained ones (one epoch
    # at batch 128 and 64 with the params' lr learned nothing here: test accuracy 1/62, greedy CER 1.09).
    "train_cnn": {"epochs": 2, "batch_size": 32, "lr": 0.02, "augment": False},
    "line_model": {"width": 8, "fc_dim": 32},
    "train_line_cnn": {"epochs": 4, "batch_size": 16, "lr": 0.01, "augment": False},
    "char_lm": {"order": 3, "num_phrases": 2000},
    "evaluate": {"num_sample_lines": 4},
}
# Every PNG the pipeline writes, each with the least width and height (px) at which it reads.
PNGS = {
    "metrics/evaluate/confusion.png": (1200, 1100),  # 62 x 62 cells, each class labelled
    "metrics/evaluate/confused_pairs.png": (900, 400),  # 12 pairs, 4 glyphs each, 3 pairs a row
    "metrics/evaluate/train_cnn_curves.png": (700, 300),  # loss, accuracy
    "metrics/evaluate/train_line_cnn_curves.png": (1100, 300),  # loss, cer, line_acc
    "metrics/evaluate/test_lines.png": (600, 200),
    "metrics/emnist_lines/samples.png": (300, 100),
}
ARTIFACTS = {"cnn": "models/cnn.pt", "line_cnn": "models/line_cnn.pt", "line_reader": "models/line_reader.pt"}
CHANCE = 1 / NUM_EMNIST_CLASSES  # the character model's accuracy when it guesses
# What training must add over an untrained network of the same shape. Measured with TINY (CPU): test accuracy
# 0.49 against 0.013-0.022 untrained (seeds 1-5); greedy CER 0.73 against 0.99-1.12 untrained and 1.0 for
# reading nothing. The sweep's num_blocks 2 and 3 reach 0.48 and 0.63.
ACC_MARGIN = 0.25
CER_MARGIN = 0.15


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def untrained_copy(checkpoint: Path, out: Path, seed: int = 1) -> Path:
    """`checkpoint`'s network (kind, kwargs, mapping, record) with the weights it starts from at `seed`: untrained."""
    from text_recognizer.models.checkpoint import build_model, load_checkpoint, save_checkpoint

    trained = load_checkpoint(checkpoint)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fresh = build_model(trained.kind, trained.model_kwargs)
    save_checkpoint(
        out,
        kind=trained.kind,
        model_kwargs=trained.model_kwargs,
        state_dict=fresh.state_dict(),
        mapping=trained.mapping,
        extra=trained.extra,
    )
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> PipelineRepo:
    repo = PipelineRepo.create(tmp_path_factory.mktemp("pipeline") / "repo", TINY)
    first = repo.dvc("exp", "run", "-n", "offline")  # as `make offline` runs it, from a tree with no dvc.lock
    assert ran_stages(first.stdout) == ALL_STAGES, first.stdout
    # The README's advice for keeping such a run out of a commit: stash it, reversibly; the models stay.
    left = {line[3:] for line in repo.git("status", "--porcelain").splitlines()}
    assert "dvc.lock" in left and not any(path.startswith(("data/", "models/")) for path in left), left
    repo.git("stash", "push", "--include-untracked", "-m", "make offline results")
    assert repo.git("status", "--porcelain", "--untracked-files=all") == ""
    assert (repo.path / "models" / "line_cnn.pt").is_file()
    repo.git("stash", "pop")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "baseline run on synthetic data")
    return repo


def restore_baseline(repo: PipelineRepo) -> None:
    repo.git("checkout", "--", "params.yaml", "dvc.lock", "metrics")  # cache: false outputs live in git
    repo.git("clean", "-fdq", "--", "metrics")  # and a run's files the baseline lacks (arch simple's val/char_acc)
    repo.dvc("checkout", "--force")


def test_repro_builds_every_output(repo: PipelineRepo):
    for out in [
        "data/raw/emnist/emnist-byclass-train-images-idx3-ubyte.gz",
        "data/raw/emnist/emnist-letters-mapping.txt",  # every split is kept
        "data/raw/brown.zip",
        "data/processed/emnist.h5",
        "data/processed/emnist_byclass.h5",  # the lines' glyphs, whatever emnist_hdf5.split is
        "data/processed/emnist_lines.h5",
        "models/cnn.pt",
        "models/line_cnn.pt",
        "models/line_reader.pt",
        "metrics/train_cnn/metrics.json",
        "metrics/train_line_cnn/metrics.json",
        "metrics/evaluate.json",
        "metrics/evaluate/confusion.json",
        *PNGS,
    ]:
        assert (repo.path / out).is_file(), out
    with h5py.File(repo.path / "data/processed/emnist_lines.h5") as f:
        share = yaml.safe_load((repo.path / "params.yaml").read_text())["emnist_lines"]["random_text_share"]
        assert f["train/images"].shape == (256 + round(share * 256), 28, 8 * 28)  # prose, then made-up lines


def test_trained_models_beat_untrained_ones_of_the_same_shape(repo: PipelineRepo, tmp_path: Path):
    """evaluate's numbers are those of the trained models, and training bought a margin over the same
    networks untrained (and over guessing, and over reading nothing), on the same test data."""
    from text_recognizer.reading.evaluation import evaluate_char, evaluate_lines

    reported = json.loads((repo.path / "metrics/evaluate.json").read_text())
    models, data = repo.path / "models", repo.path / "data" / "processed"

    trained = evaluate_char(models / "cnn.pt", data / "emnist.h5", device="cpu").accuracy
    untrained = evaluate_char(untrained_copy(models / "cnn.pt", tmp_path / "cnn.pt"), data / "emnist.h5", device="cpu")
    print(f"char test accuracy: trained {trained:.4f}, untrained {untrained.accuracy:.4f}, chance {CHANCE:.4f}")
    assert reported["cnn"]["test_acc"] == pytest.approx(trained)
    assert trained >= max(untrained.accuracy, CHANCE) + ACC_MARGIN

    lines_h5 = data / "emnist_lines.h5"
    fresh = untrained_copy(models / "line_cnn.pt", tmp_path / "line.pt")
    trained_cer = evaluate_lines(models / "line_cnn.pt", lines_h5, device="cpu").cer  # greedy
    untrained_cer = evaluate_lines(fresh, lines_h5, device="cpu").cer
    print(f"line test CER (greedy): trained {trained_cer:.4f}, untrained {untrained_cer:.4f}, reading nothing 1.0")
    assert reported["line_cnn"]["greedy"]["test_cer"] == pytest.approx(trained_cer)
    assert trained_cer <= min(untrained_cer, 1.0) - CER_MARGIN


def test_second_repro_does_nothing_and_status_is_clean(repo: PipelineRepo):
    again = repo.dvc("repro")
    assert ran_stages(again.stdout) == set(), again.stdout
    status = repo.dvc("status")
    assert "up to date" in status.stdout, status.stdout


def test_changing_overlap_reruns_lines_and_downstream_only(repo: PipelineRepo):
    result = repo.dvc("exp", "run", "-n", "overlap-half", "-S", "emnist_lines.max_overlap=0.5")
    assert ran_stages(result.stdout) == {"emnist_lines", "train_line_cnn", "evaluate"}, result.stdout
    assert "up to date" in repo.dvc("status").stdout
    restore_baseline(repo)


def test_evaluate_reports_both_decoders_and_the_choice_reruns_evaluate_only(repo: PipelineRepo):
    """The pick is the lowest val CER of the grid; its test CER is the headline; forcing greedy reruns evaluate only."""
    metrics = json.loads((repo.path / "metrics/evaluate.json").read_text())["line_cnn"]
    picked = metrics[metrics["decoder"]]
    assert metrics["test_cer"] == picked["test_cer"] and metrics["val_cer"] == picked["val_cer"]
    grid = [metrics["greedy"]["val_cer"], *(cer for row in metrics["val_grid"]["beam_cer"] for cer in row)]
    assert metrics["val_cer"] == min(grid) and metrics["beam"]["val_cer"] == min(grid[1:])
    assert set(metrics["greedy"]) == {"val_cer", "test_cer", "test_line_acc"}  # values: the test above
    assert set(metrics["beam"]) == {"lm_weight", "length_bonus", "val_cer", "test_cer", "test_line_acc"}
    result = repo.dvc("exp", "run", "-n", "greedy", "-S", "evaluate.decoders=[greedy]")
    assert ran_stages(result.stdout) == {"evaluate"}, result.stdout
    greedy = json.loads((repo.path / "metrics/evaluate.json").read_text())["line_cnn"]
    assert greedy["decoder"] == "greedy" and greedy["test_cer"] == metrics["greedy"]["test_cer"]
    restore_baseline(repo)


def test_changing_the_line_head_reruns_line_training_and_evaluate_only(repo: PipelineRepo):
    result = repo.dvc("exp", "run", "-n", "no-context", "-S", "line_model.head=none")
    assert ran_stages(result.stdout) == {"train_line_cnn", "evaluate"}, result.stdout
    restore_baseline(repo)


def test_the_labs_simple_line_model_is_an_experiment_evaluate_reads_per_window(repo: PipelineRepo):
    """line_model.arch simple with lines without overlap (tests/test_params.py: refused with overlap, by every stage)
    trains through the same stage, and evaluate reports its argmax CER, computed as evaluate_lines computes it."""
    from text_recognizer.reading.evaluation import evaluate_lines

    result = repo.dvc("exp", "run", "-n", "simple", "-S", "line_model.arch=simple", "-S", "emnist_lines.max_overlap=0")
    assert ran_stages(result.stdout) == {"emnist_lines", "train_line_cnn", "evaluate"}, result.stdout
    metrics = json.loads((repo.path / "metrics/evaluate.json").read_text())["line_cnn"]
    assert metrics["decoder"] == "argmax" and metrics["beam"].startswith("not applicable")
    models, lines_h5 = repo.path / "models", repo.path / "data/processed/emnist_lines.h5"
    test = evaluate_lines(models / "line_cnn.pt", lines_h5, device="cpu")
    assert metrics["test_cer"] == metrics["greedy"]["test_cer"] == pytest.approx(test.cer)
    print(f"simple line model: test CER {test.cer:.4f}")
    assert test.cer <= 1.0 - CER_MARGIN  # it learned something
    restore_baseline(repo)


def test_changing_num_blocks_reruns_train_cnn_and_evaluate(repo: PipelineRepo):
    result = repo.dvc("exp", "run", "-n", "four-blocks", "-S", "model.num_blocks=4")
    assert ran_stages(result.stdout) == {"train_cnn", "evaluate"}, result.stdout
    diff = repo.dvc("metrics", "diff", "--all")
    assert "cnn.test_acc" in diff.stdout, diff.stdout
    shown = repo.dvc("exp", "show", "--csv")
    assert "four-blocks" in shown.stdout and "overlap-half" in shown.stdout, shown.stdout
    restore_baseline(repo)


def test_changing_the_emnist_split_retrains_the_char_model_only(repo: PipelineRepo):
    """`-S emnist_hdf5.split=letters`: the download keeps every split and the lines read ByClass, so only
    emnist_hdf5, train_cnn and evaluate run; the model, its metrics and confusion follow Letters' 26 classes."""
    from text_recognizer.models.checkpoint import load_checkpoint

    result = repo.dvc("exp", "run", "-n", "letters", "-S", "emnist_hdf5.split=letters")
    assert ran_stages(result.stdout) == {"emnist_hdf5", "train_cnn", "evaluate"}, result.stdout
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    assert load_checkpoint(repo.path / "models/cnn.pt").mapping == letters
    cnn = json.loads((repo.path / "metrics/evaluate.json").read_text())["cnn"]
    assert {row["class"] for row in cnn["per_class_acc"]["worst"]} <= set(letters)
    assert cnn["test_acc"] > 1 / len(letters)
    confusion = json.loads((repo.path / "metrics/evaluate/confusion.json").read_text())
    assert {row["actual"] for row in confusion} == set(letters)
    restore_baseline(repo)


@pytest.mark.parametrize("bad", ["model.num_blocks=0", "model.num_blocks=abc", "train_cnn.lr=-1"])
def test_invalid_values_fail_before_training(repo: PipelineRepo, bad: str):
    """The stage stops on the bad key before training. DVC itself clears a stage's outputs before
    running it, so the old checkpoint is gone from the workspace but not from the cache."""
    before = digest(repo.path / "models/cnn.pt")
    result = repo.dvc("exp", "run", "-S", bad, check=False)
    assert result.returncode != 0
    assert f"error: {bad.split('=')[0]}" in result.stderr, result.stderr
    assert "Epoch" not in result.stdout + result.stderr  # no training started
    assert not (repo.path / "models/cnn.pt").exists()  # nothing new written
    assert not (repo.path / "metrics/train_cnn").exists()
    assert not list((repo.path / "models").glob(".*tmp")) and not list((repo.path / "metrics").glob(".*tmp"))
    restore_baseline(repo)
    assert digest(repo.path / "models/cnn.pt") == before


def run_cli(repo: PipelineRepo, *args: str) -> subprocess.CompletedProcess[str]:
    """`text-recognizer ARGS` in the pipeline repo, with its code."""
    cmd = [sys.executable, "-m", "text_recognizer.cli", *args]
    return subprocess.run(cmd, cwd=repo.path, env=repo.env, capture_output=True, text=True)


def test_predict_reads_a_generated_line(repo: PipelineRepo, tmp_path: Path):
    """predict --layout line reads a test line as evaluate's greedy decoder does: the line goes to the model as is."""
    from text_recognizer.reading.evaluation import evaluate_lines

    lines_h5 = repo.path / "data" / "processed" / "emnist_lines.h5"
    samples = evaluate_lines(repo.path / "models" / "line_cnn.pt", lines_h5, num_samples=4, device="cpu").samples
    sample = next((s for s in samples if s.pred_text.strip()), None)
    assert sample is not None, [s.pred_text for s in samples]  # the trained model reads something
    image = tmp_path / "line.png"
    Image.fromarray(255 - sample.image).save(image)  # dark ink on white paper, as a scan would be
    result = run_cli(repo, "predict", str(image), "--model", "models/line_cnn.pt", "--layout", "line")
    assert result.returncode == 0 and result.stdout == sample.pred_text.strip() + "\n", (sample, result)
    as_glyph = run_cli(repo, "predict", str(image), "--model", "models/cnn.pt")
    assert as_glyph.returncode == 1 and "line" in as_glyph.stderr  # a line is not read as one glyph
    missing = run_cli(repo, "predict", "nope.png")
    assert missing.returncode == 1 and "nope.png" in missing.stderr


def test_predict_beam_reads_as_evaluate_did_from_any_folder(repo: PipelineRepo, tmp_path: Path):
    """The reader (evaluate's models/line_reader.pt) records the decoder picked on the val lines, the best beam setting
    and its LM's digest: predict --decoder beam reads with those, run from another folder whose params.yaml says
    otherwise."""
    from text_recognizer.reading.char_lm import CharLM
    from text_recognizer.reading.evaluation import evaluate_lines, line_decoder
    from text_recognizer.reading.predict import load_model

    reader, lm = repo.path / "models" / "line_reader.pt", repo.path / "models" / "char_lm.npz"
    reading = load_model(reader, device="cpu").extra["reading"]
    evaluate = yaml.safe_load((repo.path / "params.yaml").read_text())["evaluate"]
    metrics = json.loads((repo.path / "metrics/evaluate.json").read_text())["line_cnn"]
    assert reading["decoder"] == metrics["decoder"] and reading["beam_width"] == evaluate["beam_width"]
    setting = ("lm_weight", "length_bonus")
    assert [reading[k] for k in setting] == [metrics["beam"][k] for k in setting]
    assert reading["lm_weight"] in evaluate["lm_weights"] and reading["length_bonus"] in evaluate["length_bonuses"]
    confidence = metrics["confidence"]  # the low-confidence threshold, chosen on the val lines read with the pick
    assert reading["low_confidence_threshold"] == confidence["threshold"]
    assert reading["confidence_decoder"] == confidence["decoder"] == metrics["decoder"]
    assert confidence["val"]["lines"] == 32 and confidence["test"]["lines"] == 32  # TINY's num_val and num_test
    assert confidence["test"]["wrong"] == pytest.approx(1 - metrics["test_line_acc"])
    beam = line_decoder("beam", beam_width=reading["beam_width"], lm=CharLM.load(lm), lm_weight=reading["lm_weight"],
                        length_bonus=reading["length_bonus"])  # fmt: skip
    lines_h5 = repo.path / "data" / "processed" / "emnist_lines.h5"
    samples = evaluate_lines(reader, lines_h5, decoders={"beam": beam}, num_samples=4, device="cpu").samples

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "params.yaml").write_text("evaluate:\n  beam_width: 1\n  lm_weights: [9.0]\n")  # must not matter
    for i, sample in enumerate(samples):
        image = elsewhere / f"line{i}.png"
        Image.fromarray(255 - sample.image).save(image)
        argv = ["predict", str(image), "--model", str(reader), "--lm", str(lm), "--decoder", "beam", "--layout", "line"]
        cmd = [sys.executable, "-m", "text_recognizer.cli", *argv]
        result = subprocess.run(cmd, cwd=elsewhere, env=repo.env, capture_output=True, text=True)
        if sample.pred_text.strip():
            assert result.returncode == 0 and result.stdout == sample.pred_text.strip() + "\n", result
        else:  # the tiny model read nothing here, and evaluate agrees
            assert result.returncode == 1 and "read no characters" in result.stderr, result
    unevaluated = run_cli(repo, "predict", str(image), "--model", "models/line_cnn.pt", "--decoder", "beam")
    assert unevaluated.returncode == 1 and "records no decoder settings" in unevaluated.stderr
    (elsewhere / "other_lm.npz").write_bytes(lm.read_bytes() + b"\0")
    other = run_cli(repo, "predict", str(image), "--model", str(reader), "--lm", str(elsewhere / "other_lm.npz"),
                    "--decoder", "beam")  # fmt: skip
    assert other.returncode == 1 and "is not the language model" in other.stderr


def test_remote_push_then_pull_restores_outputs_without_running(repo: PipelineRepo, tmp_path: Path):
    """A DVC remote shares data and models between clones: pull restores, nothing reruns."""
    remote = tmp_path / "remote"
    repo.dvc("remote", "add", "-d", "shared", str(remote))
    repo.git("add", ".dvc/config")
    repo.git("commit", "-qm", "add a local DVC remote")
    repo.dvc("push")
    clone = PipelineRepo(tmp_path / "clone")
    clone.env = {**repo.env, "PYTHONPATH": str(clone.path)}
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone.path)], check=True, env=repo.env)
    assert not (clone.path / "models/cnn.pt").exists()
    clone.dvc("pull")
    for out in ["data/processed/emnist.h5", "data/processed/emnist_lines.h5", "models/cnn.pt", "models/line_cnn.pt"]:
        assert digest(clone.path / out) == digest(repo.path / out), out
    assert "up to date" in clone.dvc("status").stdout
    assert ran_stages(clone.dvc("repro").stdout) == set()


def test_every_png_reads_and_dvc_plots_lists_it(repo: PipelineRepo, tmp_path: Path):
    """The figures open without `dvc plots show` (whose page loads Vega from a CDN), and it lists them all, beside
    the Vega plots of the curves and the normalised confusion, each with data."""
    written = {p.relative_to(repo.path).as_posix() for p in (repo.path / "metrics").rglob("*.png")}
    assert written == set(PNGS)
    for path, (min_width, min_height) in PNGS.items():
        with Image.open(repo.path / path) as image:
            assert image.format == "PNG" and image.width >= min_width and image.height >= min_height, (path, image.size)
    shown = json.loads(repo.dvc("plots", "show", "--json", "-o", str(tmp_path / "dvc_plots")).stdout)["data"]
    assert set(PNGS) <= set(shown), sorted(shown)
    vega = ["train_cnn_loss", "train_cnn_val_acc", "train_line_cnn_loss", "train_line_cnn_val_cer", "confusion"]
    for plot_id in vega:
        (plot,) = shown[plot_id]
        assert plot["type"] == "vega" and plot["content"]["data"]["values"], plot_id
    confusion = shown["confusion"][0]["content"]["spec"]
    assert confusion["encoding"]["y"]["field"] == "actual"  # confusion_normalized divides by the y field's totals
    assert confusion["transform"][-2]["joinaggregate"][0]["op"] == "sum"
    assert confusion["transform"][-2]["groupby"] == ["actual"]


def test_models_are_dvc_artifacts_fetched_by_name_from_the_remote(repo: PipelineRepo, tmp_path: Path):
    """dvc.yaml's artifacts, registered with Git tags (NAME@vX.Y.Z), come back by name from a DVC remote into a
    clone that holds no model and no cache: byte for byte the workspace's models. Nothing leaves the machine: the
    remote is a folder, the repo a path, and DVC Studio (tried first by `dvc artifacts get`) is switched off."""
    import dvc.api

    env = {k: v for k, v in repo.env.items() if k not in ("DVC_STUDIO_TOKEN", "STUDIO_TOKEN")}
    env["DVC_STUDIO_OFFLINE"] = "true"
    repo.dvc("remote", "add", "--force", "--default", "registry", str(tmp_path / "registry"))
    repo.git("add", ".dvc/config")
    repo.git("commit", "-qm", "the models' DVC remote")
    repo.dvc("push", *ARTIFACTS.values())
    for name in ARTIFACTS:
        repo.git("tag", "-a", f"{name}@v0.1.0", "-m", f"register {name}")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone)], check=True, env=env)
    reported = json.loads((repo.path / "metrics/evaluate.json").read_text())
    head = repo.git("rev-parse", "HEAD").strip()
    for name, path in ARTIFACTS.items():
        assert dvc.api.artifacts_show(name, repo=str(clone)) == {"rev": head, "path": path}
        out = tmp_path / f"fetched_{name}.pt"
        got = subprocess.run([sys.executable, "-m", "dvc", "artifacts", "get", str(clone), name, "-o", str(out)],
                             cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert digest(out) == digest(repo.path / path), name
        metric = yaml.safe_load((repo.path / "dvc.yaml").read_text())["artifacts"][name]["meta"]["metric"]
        value = reported
        for key in metric["key"].split("."):  # meta names where the headline figure is: it is there
            value = value[key]
        assert isinstance(value, float), (name, metric)
    assert not list(clone.glob("models/*.pt"))  # fetched from the remote, not copied from a workspace


def test_queued_sweep_runs_every_value(repo: PipelineRepo):
    """`dvc exp run --queue` with a list of values, then `dvc queue start`, as the README shows."""
    queued = repo.dvc("exp", "run", "--queue", "-S", "model.num_blocks=2,3")
    assert queued.stdout.count("Queued experiment") == 2, queued.stdout
    repo.dvc("queue", "start", "--jobs", "1")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = repo.dvc("queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status
    rows = list(csv.DictReader(io.StringIO(repo.dvc("exp", "show", "--csv").stdout)))
    blocks_key = next(k for k in rows[0] if k.endswith("model.num_blocks"))
    acc_key = next(k for k in rows[0] if k.endswith("cnn.test_acc"))
    done = [row for row in rows if row["State"] == "Success" and row["typ"].startswith("branch")]
    assert sorted(row[blocks_key] for row in done) == ["2", "3"], rows
    accuracies = [float(row[acc_key]) for row in done]
    assert all(acc >= CHANCE + ACC_MARGIN for acc in accuracies), accuracies  # each trained model beats guessing
    repo.dvc("queue", "stop", check=False)
