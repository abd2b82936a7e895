"""The `text-recognizer` command: read an image with a trained model, or look at the data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="text-recognizer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="print the text of a line image (or the class of a glyph image)")
    predict.add_argument("image", type=Path, help="PNG or JPEG; dark ink on light paper or the reverse")
    predict.add_argument(
        "--model", type=Path, default=Path("models/line_cnn.pt"), help="checkpoint (default: models/line_cnn.pt)"
    )

    show = commands.add_parser("show-lines", help="write a PNG grid of sample lines with their text")
    show.add_argument("lines_h5", type=Path, help="an emnist_lines.h5 file")
    show.add_argument("out_png", type=Path)
    show.add_argument("--split", default="test", choices=["train", "val", "test"])
    show.add_argument("-n", type=int, default=8, help="number of lines")

    args = parser.parse_args(argv)
    if args.command == "predict":
        from text_recognizer.predict import PredictError, predict_file

        try:
            print(predict_file(args.image, args.model))
        except PredictError as err:  # predict_file reports checkpoint problems as PredictError too
            print(f"error: {err}", file=sys.stderr)
            return 1
    elif args.command == "show-lines":
        from text_recognizer.data.emnist_lines import save_sample_grid

        try:
            save_sample_grid(args.lines_h5, args.out_png, split=args.split, n=args.n)
        except (OSError, ValueError, KeyError) as err:
            print(f"error: {args.lines_h5}: {err}", file=sys.stderr)
            return 1
        print(args.out_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
