"""Stage train_line_cnn: the line network of line_model.arch on emnist_lines.h5, the LineCNN read with CTC or
(simple) the lab's LineCNNSimple with cross-entropy per 28-px window.

usage: python stages/train_line_cnn.py LINES_H5 CHECKPOINT METRICS_DIR [RESUME_DIR]

RESUME_DIR keeps a Lightning checkpoint of the last finished epoch; a rerun of the same run
(params, data, code) resumes from it. The stage stops when its parent process dies.
"""

from __future__ import annotations

from pathlib import Path

from common import require_h5, run, section

from text_recognizer.params import LineModelParams, TrainParams
from text_recognizer.processes import stop_with_parent


def main(argv: list[str]) -> None:
    stop_with_parent()  # killing `dvc repro` (or DDP rank 0) stops this run too
    lines_h5, checkpoint, metrics_dir, *resume_dir = argv
    model = section(LineModelParams, "line_model")
    run_params = section(TrainParams, "train_line_cnn")
    require_h5(lines_h5, made_by="emnist_lines")

    from text_recognizer.training import train  # heavy import only after the params passed

    # Runs once per process under ddp; the library writes both outputs, atomically, on rank 0 only.
    metrics = train(
        Path(lines_h5),
        model,
        run_params,
        checkpoint_path=Path(checkpoint),
        log_dir=Path(metrics_dir),
        resume_dir=Path(resume_dir[0]) if resume_dir else None,
    )
    print({k: round(v, 4) for k, v in metrics.items()})


if __name__ == "__main__":
    run(main)
