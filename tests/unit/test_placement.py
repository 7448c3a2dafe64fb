"""Device maps: parsing and checking maps and budgets, per-device figures, imbalance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiler.analysis.placement import (
    DeviceFigures,
    counter_key,
    device_figures,
    h2d_by_device,
    placement,
)
from profiler.errors import UserError
from profiler.run.placement import device_counters, parse_max_memory, parse_placement


def test_named_maps_pass_through_and_json_is_checked() -> None:
    assert parse_placement("auto", None).device_map == "auto"
    plan = parse_placement('{"model.layers.0": 0, "model.layers.1": "cuda:1", "": "cpu"}', None)
    assert plan.device_map == {"model.layers.0": 0, "model.layers.1": "cuda:1", "": "cpu"}
    assert plan.gpus() == {0, 1} and plan.label == "custom"


def test_map_from_a_file_is_labelled_by_its_name(tmp_path: Path) -> None:
    f = tmp_path / "split.json"
    f.write_text(json.dumps({"": "disk"}))
    plan = parse_placement(str(f), None)
    assert plan.label == "split.json" and plan.device_map == {"": "disk"} and not plan.gpus()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{oops", "not valid JSON"),
        ("[1, 2]", "existing JSON file"),
        ("{}", "non-empty object"),
        ('{"": "tpu"}', "unknown device 'tpu'"),
        ('{"": -1}', "negative"),
        ('{"": true}', "not a device"),
    ],
)
def test_bad_maps_are_one_user_error(text: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        parse_placement(text, None)


def test_max_memory_units_and_devices() -> None:
    assert parse_max_memory("0=1GiB, cuda:1=2GB,cpu=500MB") == {
        0: 2**30,
        1: 2 * 10**9,
        "cpu": 500 * 10**6,
    }
    assert parse_placement("auto", "1=1GB").gpus() == {1}
    for bad in ("70GiB", "0=", "disk=1GB", "0=70XB", "gpu0=1GB"):
        with pytest.raises(UserError):
            parse_max_memory(bad)


def test_h2d_copies_are_split_per_device() -> None:
    events = [
        {
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD (Pageable -> Device)",
            "dur": 1000.0,
            "args": {"device": 0, "bytes": 4_000_000},
        },
        {
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD (Pinned -> Device)",
            "dur": 500.0,
            "args": {"device": 1, "bytes": 1_000_000},
        },
        {"cat": "gpu_memcpy", "name": "Memcpy DtoH", "dur": 9e9, "args": {"device": 1}},
        {"cat": "kernel", "name": "HtoD lookalike", "dur": 9e9, "args": {"device": 0}},
        {
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD",
            "dur": 1000.0,
            "args": {"device": 0, "bytes": 2_000_000},
        },
    ]
    assert h2d_by_device(events) == {
        "cuda:0": (6_000_000, pytest.approx(0.002)),
        "cuda:1": (1_000_000, pytest.approx(0.0005)),
    }


def test_counters_round_trip_into_figures_and_the_slowest_copy_bounds() -> None:
    events = [
        {
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD",
            "dur": 2e6,
            "args": {"device": 0, "bytes": 8e9},
        },
        {
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD",
            "dur": 3e6,
            "args": {"device": 1, "bytes": 7e9},
        },
    ]
    counters = device_counters({"cuda:0": 8 * 10**9, "cuda:1": 7 * 10**9}, events)
    counters["major_faults"] = 3  # other counters of the stage are ignored
    counters[counter_key("placed_bytes", "cpu")] = 10**9
    figs = device_figures(counters)
    assert [f.device for f in figs] == ["cuda:0", "cuda:1", "cpu"]
    assert figs[0].h2d_gbps == pytest.approx(4.0)
    p = placement(figs, 5.0)
    assert p.bounding == "cuda:1" and p.bound_by == "h2d time"
    assert p.total_bytes == 16 * 10**9
    assert p.imbalance == pytest.approx(8 / (16 / 3))


def test_without_copies_the_device_with_most_bytes_bounds() -> None:
    p = placement([DeviceFigures("cpu", 3), DeviceFigures("disk", 1), DeviceFigures("cuda:0", 0)])
    assert p.bounding == "cpu" and p.bound_by == "bytes placed"
    assert p.imbalance == pytest.approx(1.5)  # over the two devices holding weights
    with pytest.raises(ValueError):
        placement([])
