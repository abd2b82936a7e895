"""Stage evaluate: both saved checkpoints on their held-out test sets.

usage: python stages/evaluate.py CNN_CKPT LINE_CKPT CHAR_LM EMNIST_H5 LINES_H5 METRICS_JSON PLOTS_DIR READER_CKPT
                                 [TRAIN_METRICS_DIR ...]

The decoder is picked on the val lines (reading/decoder_choice.py): greedy, or beam search with the
language model at the (lm_weight, length_bonus) of params.yaml's grid that reads them best; the test
lines give the pick's figure (`line_cnn.test_cer`) beside greedy's and the best beam setting's. READER_CKPT
is the line checkpoint again, recording how it was read here (the pick, the beam setting, the LM's
sha256, val and test CERs, and the line confidence below which predict flags a reading, chosen on the val lines
read with the pick: reading/calibration.py) and bundling the character model, which cuts touching letters
(reading/cutting.py): what `text-recognizer predict` reads with, so that it never consults params.yaml.
metrics/evaluate.json's `line_cnn.confidence` says what that threshold flags on the val and test lines.
A line_model.arch simple checkpoint has no CTC outputs for the grid: it is read by the argmax of each window
(decoder_choice.read_per_window), and that is its pick and its greedy figure.

PLOTS_DIR gets the Vega data (confusion.json, one row per test glyph) and PNGs a person opens as they are: the
confusion normalised per true class, the most-confused pairs with their glyphs, the sample test lines, and for each
TRAIN_METRICS_DIR (a train stage's dvclive folder, e.g. metrics/train_cnn) its curves, as train_cnn_curves.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common import require_file, require_h5, run, section

from text_recognizer.data.download import file_digest
from text_recognizer.io import atomic_path, write_json
from text_recognizer.params import EvaluateParams

if TYPE_CHECKING:
    from text_recognizer.reading.evaluation import CharEvaluation


CURVE_TITLES = {
    "train_cnn": "character CNN: cross-entropy loss and validation accuracy",
    "train_line_cnn": "line model: CTC loss and validation reading",
}
TOP_PAIRS, GLYPHS_PER_PAIR = 12, 4


def main(argv: list[str]) -> None:
    cnn_ckpt, line_ckpt, char_lm, emnist_h5, lines_h5, metrics_json, plots_dir, reader_ckpt, *train_dirs = argv
    params = section(EvaluateParams, "evaluate")
    require_file(cnn_ckpt, made_by="train_cnn")
    require_file(line_ckpt, made_by="train_line_cnn")
    require_file(char_lm, made_by="char_lm")
    require_h5(emnist_h5, made_by="emnist_hdf5")
    require_h5(lines_h5, made_by="emnist_lines")
    for run_dir in train_dirs:
        require_file(run_dir, made_by=Path(run_dir).name)  # the train stage of the same name writes it

    from text_recognizer.models.checkpoint import save_with_extra
    from text_recognizer.reading.char_lm import CharLM
    from text_recognizer.reading.decoder_choice import choose_decoder
    from text_recognizer.reading.evaluation import evaluate_char, per_class_summary, save_line_predictions

    chars = evaluate_char(Path(cnn_ckpt), Path(emnist_h5), batch_size=params.batch_size)
    choice = choose_decoder(Path(line_ckpt), Path(lines_h5), CharLM.load(char_lm), params)
    with atomic_path(plots_dir, replace_dir=True) as tmp:  # dvc.yaml: evaluate's own plots folder
        tmp.mkdir()
        confusion = [
            {"actual": chars.mapping[t], "predicted": chars.mapping[p]}  # the classes of emnist_hdf5.split
            for t, p in zip(chars.y_true.tolist(), chars.y_pred.tolist(), strict=True)
        ]
        write_json(tmp / "confusion.json", confusion)
        save_line_predictions(choice.test.samples, tmp / "test_lines.png")
        write_figures(tmp, chars, emnist_h5, train_dirs)
    metrics = {
        "cnn": {
            "test_acc": chars.accuracy,
            "per_class_acc": per_class_summary(chars.per_class_accuracy, chars.mapping),
        },
        "line_cnn": choice.metrics(),
    }
    write_json(metrics_json, metrics)
    save_with_extra(line_ckpt, reader_ckpt, glyph_model=cnn_ckpt, reading=choice.record(file_digest(char_lm)))
    print(metrics)


def write_figures(plots_dir: Path, chars: CharEvaluation, emnist_h5: str, train_dirs: list[str]) -> None:
    """The PNGs that need no `dvc plots show` (its pages load Vega from a CDN); dvc.yaml lists each."""
    from text_recognizer.reading import figures

    counts = figures.confusion_counts(chars.y_true, chars.y_pred, len(chars.mapping))
    title = f"character CNN on the test set (accuracy {chars.accuracy:.3f}): each true class's row sums to 1"
    figures.save_confusion_png(counts, chars.mapping, plots_dir / "confusion.png", title=title)
    pairs = figures.most_confused_pairs(counts, top=TOP_PAIRS)
    examples = figures.pair_examples(chars.y_true, chars.y_pred, pairs, per_pair=GLYPHS_PER_PAIR)
    glyphs = figures.read_glyphs(emnist_h5, examples)
    figures.save_confused_pairs_png(pairs, glyphs, chars.mapping, plots_dir / "confused_pairs.png")
    for run_dir in train_dirs:
        name = Path(run_dir).name
        curves = figures.read_curves(run_dir)
        figures.save_curves_png(curves, plots_dir / f"{name}_curves.png", title=CURVE_TITLES.get(name, name))


if __name__ == "__main__":
    run(main)
