"""A whole profiling session: every repetition, then the machine's ceilings, then the
diagnosis. What ``llmprof load`` and ``llmprof decode`` ask for; commands only parse
arguments into a :class:`~profiler.run.request.ProfileRequest` and show the result.

Ceilings are looked up (or measured once) in this process after every child has
finished, so measuring them can never disturb a measured repetition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from profiler.errors import UserError
from profiler.records.ceilings import Ceilings
from profiler.records.run import RunRecord
from profiler.run.request import ProfileRequest


@dataclass(frozen=True)
class Session:
    """The runs of one command and the diagnosis lines built from them."""

    runs: tuple[RunRecord, ...]
    diagnosis: tuple[str, ...] = ()


def profile_session(
    req: ProfileRequest, ceilings: str, log: Callable[[str], None], *, variants: bool = False
) -> Session:
    """Run the request (its repetitions, or the ways of loading when ``variants``),
    then judge the runs against this machine's ceilings (``auto``/``quick``/``off``)."""
    if variants:
        from profiler.run.variants import profile_variants

        runs = profile_variants(req, log)
    else:
        from profiler.run.repetitions import profile

        runs = profile(req, log)
    return judge(runs, ceilings, req.device, log)


def judge(runs: Sequence[RunRecord], mode: str, device: str, log: Callable[[str], None]) -> Session:
    """Attach this machine's ceilings (measured once, cached) to every run and diagnose
    each cache state's group of runs."""
    ok = [r for r in runs if r.status == "ok"]
    if mode == "off" or not ok:
        return Session(tuple(runs))
    from profiler.machine.bounds import attach_ceilings
    from profiler.machine.cache import lookup

    # The filesystem the weights were read from. A hub-cold run's temporary cache is
    # gone by now: its nearest surviving parent is on the same filesystem.
    folder = Path(ok[0].model.path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        found = lookup(
            folder, quick=mode == "quick", device=device, progress=lambda m: log(f"ceilings: {m}")
        )
    except (UserError, OSError) as e:
        # The profile is measured already: a probe that lacks space or permission
        # costs the ceilings, never the runs.
        reason = str(e) if isinstance(e, UserError) else f"{e.strerror or e} ({folder})"
        if "--" in reason.rsplit(": ", 1)[-1]:
            # The fix names an option of `llmprof ceilings`, which this command lacks.
            reason = reason.rsplit(": ", 1)[0] + ": run `llmprof ceilings` to measure them"
        log(f"ceilings not measured: {reason}; stages shown without a ceiling")
        return Session(tuple(runs))
    if not found.from_cache:
        log(f"measured this machine's ceilings once; cached in {found.path}")
    ceilings = found.ceilings
    judged = [attach_ceilings(r, ceilings) if r.status == "ok" else r for r in runs]
    ceilings, judged = reprobe_beaten(judged, ceilings, folder, found.path, log)
    return Session(tuple(judged), tuple(diagnose_groups(judged, ceilings)))


def reprobe_beaten(
    runs: Sequence[RunRecord],
    ceilings: Ceilings,
    folder: Path,
    cache_path: Path,
    log: Callable[[str], None],
) -> tuple[Ceilings, list[RunRecord]]:
    """Re-probe every read ceiling a stage beat with that stage's pattern, keep the
    higher figure (and cache it), attach again, and note any stage still above its
    ceiling (:mod:`profiler.machine.reprobe`)."""
    import json

    from profiler.machine.bounds import attach_ceilings
    from profiler.machine.reprobe import explain_over, measure_on_scratch, reprobe_ceilings
    from profiler.machine.scratch import model_bytes, scratch_size
    from profiler.records.io import write_atomic

    disk = ceilings.get("disk_read")
    size = (disk.size_bytes if disk else None) or scratch_size(model_bytes(folder), quick=True)
    new, changed = reprobe_ceilings(runs, ceilings, measure_on_scratch(folder, size))
    if changed:
        log("ceilings: a stage beat its ceiling; re-probed with its own pattern")
        write_atomic(cache_path, (json.dumps(new.to_dict(), indent=1) + "\n").encode())
        runs = [attach_ceilings(r, new) if r.status == "ok" else r for r in runs]
    return new, [explain_over(r, new) if r.status == "ok" else r for r in runs]


def diagnose_groups(runs: Sequence[RunRecord], ceilings: Ceilings | None) -> list[str]:
    """Diagnosis lines of every group of ``runs`` (one group per cache state, and per
    variant with ``--variants``), each tagged with what sets its group apart.

    Without ``ceilings``, the ceilings already attached to the stages are used.
    """
    from profiler.analysis.diagnosis import diagnose
    from profiler.analysis.grouping import group_runs

    groups = [g for g in group_runs(runs) if any(r.status == "ok" for r in g.runs)]
    lines: list[str] = []
    for g in groups:
        tag = " · ".join(x for x in (g.key.variant, g.key.cache) if x)
        prefix = f"[{tag}] " if len(groups) > 1 else ""
        lines.extend(prefix + line for line in diagnose(g.runs, ceilings))
    return lines
