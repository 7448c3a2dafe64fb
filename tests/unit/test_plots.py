"""Charts: the data behind them (pure) and the PNG files they become."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from profiler.analysis.summaries import summarize_runs
from profiler.render import plots
from tests.support import fake_runs as fr

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def mixed() -> list:
    return summarize_runs(fr.mixed_runs())


def test_stage_bars_one_segment_per_ok_stage_per_group(mixed: list) -> None:
    bars = plots.stage_bars(mixed)
    assert len(bars) == len(mixed) == 5
    for bar, group in zip(bars, mixed, strict=True):
        ok = [s.name for s in group.stages if s.time is not None]
        assert [seg.stage for seg in bar.segments] == ok
        # Segments are contiguous and add up to the staged total.
        at = 0.0
        for seg in bar.segments:
            assert seg.start_s == pytest.approx(at)
            assert seg.width_s > 0
            at += seg.width_s
        assert bar.total_s == pytest.approx(group.staged_total.median)
    # CPU bars skip cuda_init and h2d_copy; GPU bars have them.
    assert len(bars[0].segments) == 9 and len(bars[2].segments) == 11
    assert bars[0].label == "SmolLM2-135M-Instruct · cpu · AMD EPYC 7B13 (2 cores)\ncold"


def test_stage_bars_labels_are_only_cache_for_one_subject() -> None:
    bars = plots.stage_bars(summarize_runs(fr.cpu_cold_warm()))
    assert [b.label for b in bars] == ["cold", "warm"]


def test_load_stages_figure_draws_every_segment(mixed: list) -> None:
    bars = plots.stage_bars(mixed)
    fig = plots.load_stages_figure(bars, "Load stages")
    (ax,) = fig.axes
    rects = [p for p in ax.patches if p.get_width() > 0]
    assert len(rects) == sum(len(b.segments) for b in bars)
    legend = fig.legends[0]
    stages = {seg.stage for b in bars for seg in b.segments}
    assert sorted(t.get_text() for t in legend.get_texts()) == sorted(stages)
    assert "(s)" in ax.get_xlabel()
    assert ax.get_title() == "Load stages"
    # Same stage, same colour, in every bar.
    colours: dict[str, set] = {}
    for bar_rects in _rects_by_bar(rects, bars):
        for seg, rect in bar_rects:
            colours.setdefault(seg.stage, set()).add(tuple(rect.get_facecolor()))
    assert all(len(c) == 1 for c in colours.values())


def _rects_by_bar(rects: list, bars: list) -> list:
    out, i = [], 0
    for b in bars:
        out.append(list(zip(b.segments, rects[i : i + len(b.segments)], strict=True)))
        i += len(b.segments)
    return out


def test_latency_series_positions_and_percentiles(mixed: list) -> None:
    (s1, s4) = plots.latency_series(mixed[1], "x")
    assert s1.batch_size == 1 and s4.batch_size == 4
    assert s1.positions == tuple(range(2, 9))  # 8 new tokens: intervals end at tokens 2..8
    assert len(s1.first_s) == len(s1.warm_s) == 7
    # Warm intervals at batch 1: 20 ms × (1.00, 1.02, 0.99), one step in seven 1.6× longer.
    assert s1.p50_s == pytest.approx(0.020)
    assert s1.p99_s == pytest.approx(0.032 * 1.02)
    assert s1.ttft_warm_s == pytest.approx(0.030)
    assert s1.ttft_first_s == pytest.approx(0.120)


def test_latency_figure_has_first_warm_and_percentile_lines(mixed: list) -> None:
    fig = plots.latency_figure(plots.latency_series(mixed[1], "SmolLM2"))
    # mixed[1] is the warm CPU group: p99 of warm intervals is 32.64 ms at batch 1.
    assert len(fig.axes) == 2  # one per batch size
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[0] == "first call of the process"
    assert labels[1] == "warm calls, median per position"
    assert "warm p50" in labels and "warm p99" in labels
    assert "p99 32.64 ms" in fig.axes[0].get_title()  # 0.032·1.02, the slowest step
    assert [t.get_text() for t in fig.legends[0].get_texts()] == labels
    assert "ms" in fig.axes[0].get_ylabel()


def test_throughput_one_series_per_subject(mixed: list) -> None:
    series = plots.throughput_series(mixed)
    # CPU and GPU subjects have batch 1 and 4; the synthetic model only batch 1.
    assert [s.label for s in series] == [
        "SmolLM2-135M-Instruct · cpu · AMD EPYC 7B13 (2 cores)",
        "SmolLM2-135M-Instruct · cuda:0 · NVIDIA H100 80GB HBM3",
    ]
    assert series[0].batch_sizes == (1, 4)
    # A warm call's mean step is (6 × 1 + 1.6) / 7 of the per-token time: 20 ms at
    # batch 1, 26 ms at batch 4 (four sequences per step).
    step = 7.6 / 7
    assert series[0].tokens_per_s == pytest.approx(
        (1 / (0.020 * step), 4 / (0.026 * step)), rel=1e-6
    )
    assert series[0].tokens_per_s_seq == pytest.approx(
        (1 / (0.020 * step), 1 / (0.026 * step)), rel=1e-6
    )


def test_planned_images(mixed: list) -> None:
    plan = plots.planned_images(mixed)
    # Decode charts once per subject, from its warm group (indices 1, 3, 4).
    assert plan == {
        "load_stages": "load_stages.png",
        "token_latency/1": "token_latency_1.png",
        "token_latency/3": "token_latency_2.png",
        "token_latency/4": "token_latency_3.png",
        "throughput": "throughput.png",
    }
    no_decode = summarize_runs([fr.make_run(decode_batches=())])
    assert plots.planned_images(no_decode) == {"load_stages": "load_stages.png"}


def test_write_plots_writes_valid_pngs(tmp_path: Path) -> None:
    groups = summarize_runs(fr.cpu_cold_warm())
    folder = tmp_path / "report_files"
    folder.mkdir()
    (folder / "token_latency_7.png").write_bytes(b"old chart")  # left by an earlier report
    (folder / "notes.txt").write_text("mine")
    written = plots.write_plots(groups, folder)
    assert set(written) == {"load_stages", "token_latency/1", "throughput"}
    for path in written.values():
        assert path.parent == folder
        width, height = png_size(path)
        assert width == int(plots.WIDTH_IN * plots.DPI)
        assert 250 <= height <= 2000
        assert path.stat().st_size > 10_000
    assert not (folder / "token_latency_7.png").exists()
    assert (folder / "notes.txt").read_text() == "mine"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in written.values())
