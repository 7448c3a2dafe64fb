"""Tables the closing note of issue 15 quotes, from one GPU session's files.

    python scripts/fastpath_figures.py VARIANTS_JSON CEILINGS_JSON OUT_DIR

Writes OUT_DIR/figures.md (the ceilings with every pattern tried, the ways of
loading ranked per cache state, the fast path's GB/s and % of pinned with its
end-to-end speed-up) and OUT_DIR/figures.json (the same figures as numbers).
Every figure comes from the records; nothing here measures.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from profiler.analysis.fastpath import fastpath_figures
from profiler.records.ceilings import Ceilings
from profiler.records.io import load_runs
from profiler.render.ceilings import ceilings_report
from profiler.render.fastpath import fastpath_table
from profiler.render.variants import render_variants


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    runs = load_runs(argv[0])
    ceilings = Ceilings.from_dict(json.loads(Path(argv[1]).read_text()))
    out = Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    figs = fastpath_figures(runs, ceilings)
    md = [
        "## Ceilings (best of the patterns tried)",
        "",
        "```",
        ceilings_report(ceilings),
        "```",
        "",
        "## Ways of loading, ranked",
        "",
        render_variants(runs, "pipe"),
        "",
        "## Fast path: read + copy against pinned host-to-device, and end to end",
        "",
        fastpath_table(figs),
        "",
    ]
    (out / "figures.md").write_text("\n".join(md))
    doc = {
        "fastpath": [
            {**dataclasses.asdict(f), "pinned_fraction": f.pinned_fraction, "speedup": f.speedup}
            for f in figs
        ],
        "ceilings": {k: c.value for k, c in ceilings.items.items()},
        "winners": {k: c.winner for k, c in ceilings.items.items()},
    }
    (out / "figures.json").write_text(json.dumps(doc, indent=1) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
