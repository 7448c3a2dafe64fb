"""A beaten ceiling re-probed for real: a scratch file written, read with the
stage's pattern, removed, and the higher ceiling cached."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from profiler.machine.bounds import attach_ceilings
from profiler.machine.patterns import best_of
from profiler.records.ceilings import GBPS, Ceilings
from tests.support.ceiling_runs import MIB, beating_run, ceilings_of, pat, stage_of


def test_session_reprobes_on_a_real_scratch_file_and_caches_the_result(tmp_path: Path) -> None:
    from profiler.run.session import reprobe_beaten

    slow = best_of("disk_read", GBPS, [pat("direct 4t", 0.001)], size_bytes=16 * MIB)
    ceilings = replace(ceilings_of(disk=1.0, page=60.0), items={"disk_read": slow})
    run = attach_ceilings(beating_run(2.0), ceilings)
    cache = tmp_path / "ceilings.json"
    folder = tmp_path / "models"
    folder.mkdir()
    said: list[str] = []
    new, runs = reprobe_beaten([run], ceilings, folder, cache, said.append)
    disk = new.items["disk_read"]
    assert [p.origin for p in disk.patterns] == ["probe", "reprobe"]
    assert disk.patterns[1].label == "buffered 16t × 16 MiB" and disk.patterns[1].value
    assert disk.value == disk.patterns[1].value  # a real read beats 1 MB/s
    assert Ceilings.from_dict(json.loads(cache.read_text())) == new
    assert list(folder.iterdir()) == []  # the scratch file is gone
    assert said and "re-probed" in said[0]
    st = stage_of(runs[0], "weight_read")
    assert st.ceiling_gbps == disk.value
