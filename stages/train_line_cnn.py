"""Stage train_line_cnn: the LineCNN read with CTC on emnist_lines.h5.

usage: python stages/train_line_cnn.py LINES_H5 CHECKPOINT METRICS_DIR
"""

from __future__ import annotations

from pathlib import Path

from common import run, section

from text_recognizer.params import LineModelParams, TrainParams


def main(argv: list[str]) -> None:
    lines_h5, checkpoint, metrics_dir = argv
    model = section(LineModelParams, "line_model")
    run_params = section(TrainParams, "train_line_cnn")
    if not Path(lines_h5).is_file():
        raise FileNotFoundError(f"{lines_h5} does not exist: run the emnist_lines stage first")

    from text_recognizer.training import train_line_model  # heavy import only after the params passed

    # Runs once per process under ddp; the library writes both outputs, atomically, on rank 0 only.
    metrics = train_line_model(
        Path(lines_h5), model, run_params, checkpoint_path=Path(checkpoint), log_dir=Path(metrics_dir)
    )
    print({k: round(v, 4) for k, v in metrics.items()})


if __name__ == "__main__":
    run(main)
