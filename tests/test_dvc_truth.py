"""dvc.yaml and what main commits must tell the truth: every imported library file is a dep, every plot and
artifact is something a stage writes, and no committed lock or metric comes from generated data."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PIPELINE = DVC_YAML["stages"]


def _module_file(module: str) -> Path | None:
    """The repo file of a first-party module (text_recognizer.x or a stage's `common`), else None."""
    if module == "common":
        return ROOT / "stages" / "common.py"
    if module != "text_recognizer" and not module.startswith("text_recognizer."):
        return None
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of `path` names, lazy imports inside functions included."""
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing file's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, node.module] if node.module else parent)
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def import_closure(script: Path) -> set[Path]:
    """Repo files that running `script` may import, followed transitively (packages' __init__ too)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imported_modules(path):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = _module_file(".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return seen


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(dep) or Path(dep) in rel.parents for dep in deps)


def _inert_init(path: Path) -> bool:
    """A package __init__ that holds only a docstring and dunder constants (__version__) cannot
    change what a stage computes, so it need not be a dep."""
    if path.name != "__init__.py":
        return False
    for node in ast.parse(path.read_text()).body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        dunder = isinstance(node, ast.Assign) and all(
            isinstance(t, ast.Name) and t.id.startswith("__") for t in node.targets
        )
        if not (docstring or dunder):
            return False
    return True


@pytest.mark.parametrize("stage", sorted(PIPELINE))
def test_stage_deps_list_every_library_file_the_script_imports(stage: str):
    spec = PIPELINE[stage]
    script = ROOT / spec["cmd"].split()[1]
    assert script.is_file(), f"{stage}: {script} not found"
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]]
    missing = sorted(
        str(p.relative_to(ROOT)) for p in import_closure(script) if not _covered(p, deps) and not _inert_init(p)
    )
    assert not missing, f"dvc.yaml: stage {stage} imports these files but does not list them in deps: {missing}"


def test_the_train_stages_depend_on_their_whole_sections():
    """Whole sections, not listed keys: `-S model.arch=mlp` (or a new size key, or overfit_batches) reruns the
    train stage, and evaluate after it through models/cnn.pt, with no change to dvc.yaml."""
    expected = {"train_cnn": ["model", "train_cnn"], "train_line_cnn": ["line_model", "train_line_cnn"]}
    for stage, sections in expected.items():
        assert PIPELINE[stage]["params"] == sections, stage
    assert "models/cnn.pt" in PIPELINE["train_cnn"]["outs"] and "models/cnn.pt" in PIPELINE["evaluate"]["deps"]
    assert "text_recognizer/models" in PIPELINE["train_cnn"]["deps"]  # every arch's module, the folder whole
    assert "text_recognizer/models" in PIPELINE["evaluate"]["deps"]  # which rebuilds any of them


def _stage_outs(stage: str) -> list[str]:
    return [o if isinstance(o, str) else next(iter(o)) for o in PIPELINE[stage]["outs"]]


def test_the_emnist_split_reaches_the_char_model_only():
    """`-S emnist_hdf5.split=letters` reruns emnist_hdf5, train_cnn and evaluate: never the download (it keeps every
    split) nor emnist_lines, which reads the ByClass file that emnist_hdf5 writes the same for every split."""
    assert PIPELINE["emnist_hdf5"]["params"] == ["emnist_hdf5"]
    assert {"data/processed/emnist.h5", "data/processed/emnist_byclass.h5"} <= set(_stage_outs("emnist_hdf5"))
    for stage in ("download_emnist", "download_brown", "emnist_lines", "char_lm", "train_line_cnn"):
        params = PIPELINE[stage].get("params", [])
        assert not any(p == "emnist_hdf5" or str(p).startswith("emnist_hdf5.") for p in params), (stage, params)
    lines = PIPELINE["emnist_lines"]
    assert "data/processed/emnist_byclass.h5" in lines["deps"] and "data/processed/emnist.h5" not in lines["deps"]
    assert lines["cmd"].split()[2] == "data/processed/emnist_byclass.h5"
    for stage in ("train_cnn", "evaluate"):  # the char model's split
        assert "data/processed/emnist.h5" in PIPELINE[stage]["deps"]
        assert "data/processed/emnist_byclass.h5" not in PIPELINE[stage]["deps"]


def test_every_cached_output_is_ignored_by_the_projects_gitignore():
    """DVC would otherwise write a .gitignore of its own beside the output, and `git status` after `make offline`
    would show data/ (the README's stash advice and the e2e fixture expect only the lock and metrics)."""
    cached = [
        next(iter(o)) if isinstance(o, dict) else o
        for spec in PIPELINE.values()
        for o in spec.get("outs", [])
        if not (isinstance(o, dict) and next(iter(o.values())).get("cache") is False)
    ]
    assert "data/processed/emnist_byclass.h5" in cached
    inside = [f"{out}/x" for out in cached]  # a folder output: a pattern with a trailing slash matches what it holds
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *cached, *inside], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    missing = [out for out, child in zip(cached, inside, strict=True) if out not in ignored and child not in ignored]
    assert not missing, f"not in .gitignore: {missing}"


def test_the_closure_follows_lazy_and_transitive_imports():
    closure = {str(p.relative_to(ROOT)) for p in import_closure(ROOT / "stages" / "train_cnn.py")}
    assert "stages/common.py" in closure  # `from common import ...`
    assert "text_recognizer/training.py" in closure  # imported inside main()
    assert "text_recognizer/data/device_loader.py" in closure  # imported by training.py


def _outs() -> set[str]:
    return {o if isinstance(o, str) else next(iter(o)) for spec in PIPELINE.values() for o in spec.get("outs", [])}


def _written(path: str) -> bool:
    """Whether a stage declares `path` as an output, or a folder above it."""
    return any(Path(path) == Path(out) or Path(out) in Path(path).parents for out in _outs())


def test_every_plot_reads_what_a_stage_writes():
    """A plot naming a file no stage writes (a renamed metric, a typo) is silently empty in `dvc plots show`."""
    files = []
    for entry in DVC_YAML["plots"]:
        plot_id, spec = next(iter(entry.items())) if isinstance(entry, dict) else (entry, None)
        y = (spec or {}).get("y")
        files.extend(y if isinstance(y, dict) else [plot_id])
    assert files and not [f for f in files if not _written(f)], [f for f in files if not _written(f)]


def test_artifacts_are_models_a_stage_writes_under_names_dvc_accepts():
    """`dvc artifacts get REPO NAME` finds a model by these names; meta names the metric that judges it."""
    from dvc.repo.artifacts import check_name_format

    artifacts = DVC_YAML["artifacts"]
    assert set(artifacts) == {"cnn", "line_cnn", "line_reader"}
    for name, spec in artifacts.items():
        check_name_format(name)  # DVC's (GTO's) rule: letters, digits, - _ /, starting and ending alphanumeric
        assert spec["type"] == "model" and spec["desc"] and spec["labels"], name
        assert spec["path"] in _outs() and spec["path"].endswith(".pt"), name
        metric = spec["meta"]["metric"]
        assert metric["file"] in DVC_YAML["metrics"] and metric["better"] in ("higher", "lower"), name
        assert spec["meta"]["made_by"] in PIPELINE and spec["path"] in str(PIPELINE[spec["meta"]["made_by"]]["outs"])


def _tracked(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", *paths], cwd=ROOT, check=True, capture_output=True, text=True)
    return out.stdout.split()


GENERATED_SOURCES = ("synthetic", "handwriting")  # handwriting: generated glyphs with some real ones blended in


def records_synthetic(lock_text: str) -> bool:
    """Whether a dvc.lock records a stage run on generated data (`data.source: synthetic` or `handwriting`)."""
    lock = yaml.safe_load(lock_text) or {}
    for stage in (lock.get("stages") or {}).values():
        for values in (stage.get("params") or {}).values():
            values = values or {}
            if (
                values.get("data.source") in GENERATED_SOURCES
                or (values.get("data") or {}).get("source") in GENERATED_SOURCES
            ):
                return True
    return False


def test_main_commits_no_results_of_generated_data():
    if "dvc.lock" in _tracked("dvc.lock"):
        assert not records_synthetic((ROOT / "dvc.lock").read_text()), (
            "the committed dvc.lock ran on generated data (data.source synthetic or handwriting)"
        )
    results = [p for p in _tracked("metrics") if p != "metrics/README.md"]
    if results:  # metrics only mean something beside the lock that says what produced them
        assert "dvc.lock" in _tracked("dvc.lock"), f"metrics committed without a dvc.lock: {results}"


def test_the_synthetic_check_reads_dvc_locks():
    lock = {
        "schema": "2.0",
        "stages": {"download_emnist": {"params": {"params.yaml": {"data": {"source": "synthetic"}}}}},
    }
    assert records_synthetic(yaml.safe_dump(lock))
    lock["stages"]["download_emnist"]["params"]["params.yaml"]["data"]["source"] = "handwriting"
    assert records_synthetic(yaml.safe_dump(lock))
    lock["stages"]["download_emnist"]["params"]["params.yaml"]["data"]["source"] = "nist"
    assert not records_synthetic(yaml.safe_dump(lock))
