#!/usr/bin/env bash
# Wheels, for the GPU machine's Python 3.12, of what text_recognizer needs there and that machine lacks:
# pydantic (text_recognizer.params) and its helpers, at the versions installed here. Run it here, before
# the device call; then call the device tool with carry [".whl"], and gpu_check.sh installs them first.
#   bash benchmarks/gpu_wheels.sh        (WHEELS=DIR to write elsewhere than .whl/, which git ignores)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
dest=${WHEELS:-.whl}
read -r -a pins < <("$py" -c 'from importlib.metadata import version
print(*(f"{n}=={version(n)}" for n in ("pydantic", "pydantic_core", "annotated_types", "typing_inspection")))')
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" "${pins[@]}"
ls -l "$dest"
