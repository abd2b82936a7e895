"""Stage train_cnn: the ResNet-style character classifier on emnist.h5.

usage: python stages/train_cnn.py EMNIST_H5 CHECKPOINT METRICS_DIR
"""

from __future__ import annotations

from pathlib import Path

from common import run, section

from text_recognizer.params import ModelParams, TrainParams


def main(argv: list[str]) -> None:
    emnist_h5, checkpoint, metrics_dir = argv
    model = section(ModelParams, "model")
    run_params = section(TrainParams, "train_cnn")
    if not Path(emnist_h5).is_file():
        raise FileNotFoundError(f"{emnist_h5} does not exist: run the emnist_hdf5 stage first")

    from text_recognizer.training import train_char_model  # heavy import only after the params passed

    # Runs once per process under ddp; the library writes both outputs, atomically, on rank 0 only.
    metrics = train_char_model(
        Path(emnist_h5), model, run_params, checkpoint_path=Path(checkpoint), log_dir=Path(metrics_dir)
    )
    print({k: round(v, 4) for k, v in metrics.items()})


if __name__ == "__main__":
    run(main)
