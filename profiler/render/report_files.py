"""A report and its charts written whole or not at all.

Charts and markdown are drawn into a temporary folder beside the report, then moved
into place together, the markdown last (so a report never links a chart that is not
there yet). If anything fails before the move, the temporary folder is removed and
nothing of the new report is left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from profiler.errors import UserError
from profiler.files import TEMP_PREFIX, write_file
from profiler.records.run import RunRecord


def write_report_files(
    out: Path,
    images: Path,
    draw_charts: Callable[[Path], dict[str, Path]],
    markdown: Callable[[dict[str, Path]], str],
    stale: Sequence[str] = (),
) -> list[Path]:
    """``draw_charts(folder)`` draws into a temporary folder; ``markdown(charts)``
    renders the text; both land at ``out`` and ``images``. Charts of an earlier
    report matching ``stale`` (glob patterns) that this one does not draw are
    removed, so the folder never holds a chart the report does not describe.
    Returns the files written, the report first."""
    target = Path(os.path.realpath(out))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{TEMP_PREFIX}report-", dir=target.parent))
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror}: choose a writable path") from e
    try:
        drawn = draw_charts(staging / images.name)
        text = markdown(drawn)
        placed = _move_charts(drawn, images, stale)
    except OSError as e:
        raise UserError(f"cannot write the report {out}: {e.strerror}: nothing was written") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        write_file(out, text.encode())
    except BaseException:
        for chart in placed.values():  # no charts without the report that shows them
            chart.unlink(missing_ok=True)
        raise
    return [out, *placed.values()]


def _move_charts(drawn: dict[str, Path], images: Path, stale: Sequence[str]) -> dict[str, Path]:
    """Move the drawn charts into ``images`` (created), replacing same-named files."""
    if images.is_dir():
        keep = {p.name for p in drawn.values()}
        for pattern in stale:
            for old in images.glob(pattern):
                if old.name not in keep and old.is_file():
                    old.unlink()
    if not drawn:
        return {}
    images.mkdir(parents=True, exist_ok=True)
    placed: dict[str, Path] = {}
    for key, src in drawn.items():
        dst = images / src.name
        os.replace(src, dst)
        placed[key] = dst
    return placed


def write_report(
    runs: Sequence[RunRecord],
    out_path: str | os.PathLike[str],
    *,
    title: str | None = None,
    skipped: Sequence[tuple[str, str]] = (),
    plots: bool = True,
) -> list[Path]:
    """Write the markdown report and its charts; return the files written (report first).

    Charts go to ``<stem>_files/`` beside the report and are linked by relative path.
    Every file is written to a temporary name and renamed, so an interrupted run
    leaves no half-written file.
    """
    # Imported here: markdown and the plots pull in matplotlib and the renderers,
    # which a failed output check should not pay for.
    from profiler.analysis.summaries import summarize_runs
    from profiler.render import decode_bounds
    from profiler.render.markdown import images_folder, render_markdown
    from profiler.render.plots import CHART_FILES, write_plots
    from profiler.render.timeline_plot import write_timelines

    out = Path(out_path)
    groups = summarize_runs(runs)
    if not groups:
        raise UserError("no runs to report: pass llmprof JSON result files or folders")
    images = images_folder(out)

    def charts(folder: Path) -> dict[str, Path]:
        if not plots:
            return {}
        drawn = write_plots(groups, folder)
        drawn.update(write_timelines(runs, folder))
        drawn.update(decode_bounds.write_sweep_chart(groups, folder))
        return drawn

    def text(drawn: dict[str, Path]) -> str:
        rel = {k: f"{images.name}/{p.name}" for k, p in drawn.items()}
        return render_markdown(runs, title=title, images=rel, skipped=skipped)

    return write_report_files(out, images, charts, text, stale=CHART_FILES if plots else ())
