"""Stage evaluate: both saved checkpoints on their held-out test sets.

usage: python stages/evaluate.py CNN_CKPT LINE_CKPT CHAR_LM EMNIST_H5 LINES_H5 METRICS_JSON PLOTS_DIR READER_CKPT

The decoder is picked on the val lines (reading/decoder_choice.py): greedy, or beam search with the
language model at the (lm_weight, length_bonus) of params.yaml's grid that reads them best; the test
lines give the pick's figure (`line_cnn.test_cer`) beside greedy's and the best beam setting's. READER_CKPT
is the line checkpoint again, recording how it was read here (the pick, the beam setting, the LM's
sha256, val and test CERs): what `text-recognizer predict` reads with, so that it never consults params.yaml.
"""

from __future__ import annotations

from pathlib import Path

from common import require_file, require_h5, run, section

from text_recognizer.data.download import file_digest
from text_recognizer.io import atomic_path, write_json
from text_recognizer.params import EvaluateParams


def main(argv: list[str]) -> None:
    cnn_ckpt, line_ckpt, char_lm, emnist_h5, lines_h5, metrics_json, plots_dir, reader_ckpt = argv
    params = section(EvaluateParams, "evaluate")
    require_file(cnn_ckpt, made_by="train_cnn")
    require_file(line_ckpt, made_by="train_line_cnn")
    require_file(char_lm, made_by="char_lm")
    require_h5(emnist_h5, made_by="emnist_hdf5")
    require_h5(lines_h5, made_by="emnist_lines")

    from text_recognizer.metadata import EMNIST_CLASSES
    from text_recognizer.models.checkpoint import save_with_extra
    from text_recognizer.reading.char_lm import CharLM
    from text_recognizer.reading.decoder_choice import choose_decoder
    from text_recognizer.reading.evaluation import evaluate_char, per_class_summary, save_line_predictions

    chars = evaluate_char(Path(cnn_ckpt), Path(emnist_h5), batch_size=params.batch_size)
    choice = choose_decoder(Path(line_ckpt), Path(lines_h5), CharLM.load(char_lm), params)
    with atomic_path(plots_dir, replace_dir=True) as tmp:  # dvc.yaml: evaluate's own plots folder
        tmp.mkdir()
        confusion = [
            {"actual": EMNIST_CLASSES[t], "predicted": EMNIST_CLASSES[p]}
            for t, p in zip(chars.y_true.tolist(), chars.y_pred.tolist(), strict=True)
        ]
        write_json(tmp / "confusion.json", confusion)
        save_line_predictions(choice.test.samples, tmp / "test_lines.png")
    metrics = {
        "cnn": {
            "test_acc": chars.accuracy,
            "per_class_acc": per_class_summary(chars.per_class_accuracy, EMNIST_CLASSES),
        },
        "line_cnn": choice.metrics(),
    }
    write_json(metrics_json, metrics)
    save_with_extra(line_ckpt, reader_ckpt, reading=choice.record(file_digest(char_lm)))
    print(metrics)


if __name__ == "__main__":
    run(main)
