"""Independent check of the import attribution: is a stage's "own work" (its time
minus the lazy imports the tracker saw) what the same call costs with nothing left
to import?

    python scripts/check_import_attribution.py [MODEL] [--rounds N] [--json PATH]

MODEL is a model folder or ``smollm2-135m`` (the bundled model, the default). Each
round runs two fresh processes, alternated:

- **tracked**: the child's set-up (import tracker first, then torch and
  transformers), then the ``tokenizer``, ``config`` and ``model_init`` stages of the
  staged view, recorded as llmprof records them; prints each stage's time, its
  import time and its own time (time − imports);
- **pre-imported**: imports every module the tracked process had loaded by the end
  (so the stages have nothing left to import), no tracker, then the same stages;
  prints their times.

The tracked own time and the pre-imported time measure the same work two ways; the
medians over rounds are printed side by side with their difference.
"""

from __future__ import annotations

import time

T0 = time.monotonic_ns()

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

STAGES = ("tokenizer", "config", "model_init")


def _folder(spec: str) -> Path:
    if spec == "smollm2-135m":
        from profiler.sources.bundled import ensure_bundled

        return ensure_bundled()[0]
    return Path(spec)


def _stages(folder: Path, rec: Any) -> None:
    import torch

    from profiler.load.common import LoadOptions, config_stage, model_init_stage, tokenizer_stage

    options = LoadOptions(dtype="auto", device="cpu", read_threads=4, pinned=False)
    tokenizer_stage(folder, options, rec)
    config, gen = config_stage(folder, options, rec)
    model_init_stage(config, torch.bfloat16, gen, rec)


def child(mode: str, folder: Path, modules_file: Path) -> dict[str, Any]:
    """One measured process (``mode`` tracked or preimported)."""
    from profiler.measure.imports import ImportTracker
    from profiler.measure.recorder import Recorder

    rec = Recorder(sample_memory=False, progress=False)
    # Both processes track: the pre-imported one has (almost) nothing left to import,
    # and its garbage collections are measured the same way.
    rec.imports = ImportTracker()
    rec.imports.install()
    if mode == "tracked":
        import torch  # noqa: F401
        import transformers  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
    else:
        failed = 0
        for name in json.loads(modules_file.read_text()):
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - a module that cannot load alone is skipped
                failed += 1
    import transformers

    transformers.logging.set_verbosity_error()
    _stages(folder, rec)
    if mode == "tracked":
        modules_file.write_text(json.dumps(sorted(sys.modules)))
    return {
        s.name: {
            "time_s": s.duration_s,
            "import_s": s.import_s,
            "gc_s": s.gc_s,
            "own_s": s.own_s,
            "modules": s.import_modules,
        }
        for s in rec.records
    }


def _run(mode: str, spec: str, modules_file: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, spec, str(modules_file)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default="smollm2-135m")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    _folder(args.model)  # build the bundled model once, outside the measured processes
    tracked: list[dict[str, Any]] = []
    pre: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        modules = Path(d) / "modules.json"
        for _ in range(args.rounds):
            tracked.append(_run("tracked", args.model, modules))
            pre.append(_run("preimported", args.model, modules))
    rows = {}
    head = ("stage", "time", "imports", "modules", "gc", "own", "pre-imp", "its gc", "its own")
    print(f"{head[0]:<12}" + "".join(f"{h:>9}" for h in head[1:]) + f"{'diff own':>10}")
    for name in STAGES:

        def med(rs: list[dict[str, Any]], key: str, stage: str = name) -> float:
            return statistics.median(float(r[stage][key]) for r in rs)

        row = {
            "time_s": med(tracked, "time_s"),
            "import_s": med(tracked, "import_s"),
            "modules": med(tracked, "modules"),
            "gc_s": med(tracked, "gc_s"),
            "own_s": med(tracked, "own_s"),
            "preimported_time_s": med(pre, "time_s"),
            "preimported_gc_s": med(pre, "gc_s"),
            "preimported_own_s": med(pre, "own_s"),
        }
        rows[name] = {
            **row,
            "tracked_rounds": [r[name] for r in tracked],
            "preimported_rounds": [r[name] for r in pre],
        }
        diff = row["own_s"] - row["preimported_own_s"]
        print(f"{name:<12}" + "".join(f"{v:9.3f}" for v in row.values()) + f"{diff:+10.3f}")
    print(
        f"seconds, medians of {args.rounds} rounds; own = time - imports - gc outside imports; "
        "pre-imp = the same stage in a process that imported everything first"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "stages": rows}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, spec, modules_path = sys.argv[2], sys.argv[3], Path(sys.argv[4])
        print(json.dumps(child(mode, _folder(spec), modules_path)))
    else:
        main()
