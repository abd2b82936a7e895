"""Stage evaluate: both saved checkpoints on their held-out test sets.

usage: python stages/evaluate.py CNN_CKPT LINE_CKPT CHAR_LM EMNIST_H5 LINES_H5 METRICS_JSON PLOTS_DIR READER_CKPT

The lines are read with both decoders (greedy, and beam search with the language model);
`line_cnn.test_cer` is the one `evaluate.decoder` names, and both are reported. READER_CKPT is
the line checkpoint again, recording how it was read here (decoder, beam width, LM weight and the
LM's sha256): what `text-recognizer predict` reads with, so that it never consults params.yaml.
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
    from text_recognizer.reading.evaluation import (
        evaluate_char,
        evaluate_lines,
        line_decoder,
        per_class_summary,
        save_line_predictions,
    )

    chars = evaluate_char(Path(cnn_ckpt), Path(emnist_h5), batch_size=params.batch_size)
    lm = CharLM.load(char_lm)
    decoders = {
        "greedy": line_decoder("greedy"),
        "beam": line_decoder("beam", beam_width=params.beam_width, lm=lm, lm_weight=params.lm_weight),
    }
    chosen = {params.decoder: decoders.pop(params.decoder), **decoders}  # the chosen one first: samples, test_cer
    lines = evaluate_lines(
        Path(line_ckpt),
        Path(lines_h5),
        decoders=chosen,
        batch_size=params.batch_size,
        num_samples=params.num_sample_lines,
    )
    with atomic_path(plots_dir, replace_dir=True) as tmp:  # dvc.yaml: evaluate's own plots folder
        tmp.mkdir()
        confusion = [
            {"actual": EMNIST_CLASSES[t], "predicted": EMNIST_CLASSES[p]}
            for t, p in zip(chars.y_true.tolist(), chars.y_pred.tolist(), strict=True)
        ]
        write_json(tmp / "confusion.json", confusion)
        save_line_predictions(lines.samples, tmp / "test_lines.png")
    metrics = {
        "cnn": {
            "test_acc": chars.accuracy,
            "per_class_acc": per_class_summary(chars.per_class_accuracy, EMNIST_CLASSES),
        },
        "line_cnn": {
            "decoder": params.decoder,
            "test_cer": lines.cer,
            "test_line_acc": lines.line_accuracy,
            **{name: {"test_cer": m["cer"], "test_line_acc": m["line_acc"]} for name, m in lines.by_decoder.items()},
        },
    }
    write_json(metrics_json, metrics)
    reading = {
        "decoder": params.decoder,
        "beam_width": params.beam_width,
        "lm_weight": params.lm_weight,
        "lm_sha256": file_digest(char_lm),
        "test_cer": {name: m["cer"] for name, m in lines.by_decoder.items()},
    }
    save_with_extra(line_ckpt, reader_ckpt, reading=reading)
    print(metrics)


if __name__ == "__main__":
    run(main)
