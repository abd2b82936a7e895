"""Stage train_cnn: the character classifier of model.arch (ResNet-style, or the labs' CNN or MLP) on emnist.h5.

usage: python stages/train_cnn.py EMNIST_H5 CHECKPOINT METRICS_DIR [RESUME_DIR]

RESUME_DIR keeps a Lightning checkpoint of the last finished epoch; a rerun of the same run
(params, data, code) resumes from it. The stage stops when its parent process dies.
"""

from __future__ import annotations

from pathlib import Path

from common import require_h5, run, section

from text_recognizer.params import ModelParams, TrainParams
from text_recognizer.processes import stop_with_parent


def main(argv: list[str]) -> None:
    stop_with_parent()  # killing `dvc repro` (or DDP rank 0) stops this run too
    emnist_h5, checkpoint, metrics_dir, *resume_dir = argv
    model = section(ModelParams, "model")
    run_params = section(TrainParams, "train_cnn")
    require_h5(emnist_h5, made_by="emnist_hdf5")

    from text_recognizer.training import train  # heavy import only after the params passed

    # Runs once per process under ddp; the library writes both outputs, atomically, on rank 0 only.
    metrics = train(
        Path(emnist_h5),
        model,
        run_params,
        checkpoint_path=Path(checkpoint),
        log_dir=Path(metrics_dir),
        resume_dir=Path(resume_dir[0]) if resume_dir else None,
    )
    print({k: round(v, 4) for k, v in metrics.items()})


if __name__ == "__main__":
    run(main)
