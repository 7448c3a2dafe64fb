"""Tables that set groups side by side: every group's headline figures, native
against staged, the native view's counters, and the machines the runs came from.

Built from group summaries with the cells of :mod:`profiler.render.format`; laid out
by :func:`profiler.render.tables.render_table` like every other table.
"""

from __future__ import annotations

from collections.abc import Sequence

from profiler.analysis.summaries import GroupSummary, headline_decode, native_gap
from profiler.records.run import Environment
from profiler.render.format import (
    MISSING,
    human_bytes,
    human_seconds,
    med_spread,
    num,
    percent,
    signed,
    time_unit,
)
from profiler.render.tables import Column, Table, informative, key_columns, make_table


def groups_table(groups: Sequence[GroupSummary], fields: Sequence[str]) -> Table:
    """Cross-group summary: each group's load totals and headline decode figures."""
    staged = [g.staged_total for g in groups]
    loads = [g.load_total for g in groups]
    native = [g.native_total for g in groups]
    heads = [headline_decode(g) for g in groups]
    lu = time_unit([s.median for s in staged + loads + native if s])
    tu = time_unit([h.figures.ttft.median for h in heads if h and h.figures.ttft])
    batch_sizes = {h.batch_size for h in heads if h}
    seq = tuple(num(h.figures.tokens_per_s_seq) if h else MISSING for h in heads)
    ttft = tuple(med_spread(h.figures.ttft, tu) if h else MISSING for h in heads)
    native_cells = tuple(med_spread(s, lu) for s in native)
    return make_table(
        [
            *key_columns(groups, fields),
            Column(
                "n",
                tuple(
                    str(g.n_ok) if g.n_ok == g.n_runs else f"{g.n_ok}/{g.n_runs}" for g in groups
                ),
            ),
            Column(f"load total ({lu.name})", tuple(med_spread(s, lu) for s in loads)),
            Column(f"native total ({lu.name})", native_cells, show=informative(native_cells)),
            Column(f"staged total ({lu.name})", tuple(med_spread(s, lu) for s in staged)),
            Column(
                "batch",
                tuple(str(h.batch_size) if h else MISSING for h in heads),
                show=len(batch_sizes) > 1,
            ),
            Column(f"TTFT ({tu.name})", ttft, show=informative(ttft)),
            Column("tok/s (seq)", seq, show=informative(seq)),
        ]
    )


def native_table(groups: Sequence[GroupSummary], fields: Sequence[str]) -> Table:
    """The load total (staged, startup excluded) against the plain ``from_pretrained``."""
    groups = [g for g in groups if g.native_total is not None]
    stage_names: list[str] = []
    for g in groups:
        stage_names += [s.name for s in g.native_stages if s.name not in stage_names]
    lu = time_unit([s.median for g in groups for s in (g.load_total, g.native_total) if s])
    gaps = [native_gap(g) for g in groups]
    native_stage_cols = []
    # One native stage is the total itself: a column for it would repeat the total.
    for name in stage_names if len(stage_names) > 1 else ():
        cells = []
        for g in groups:
            st = next((s for s in g.native_stages if s.name == name), None)
            cells.append(med_spread(st.time, lu) if st else MISSING)
        native_stage_cols.append(
            Column(f"{name} ({lu.name})", tuple(cells), show=informative(cells))
        )
    return make_table(
        [
            *key_columns(groups, fields),
            *native_stage_cols,
            Column(
                f"native total ({lu.name})", tuple(med_spread(g.native_total, lu) for g in groups)
            ),
            Column(f"load total ({lu.name})", tuple(med_spread(g.load_total, lu) for g in groups)),
            Column(
                f"native − load ({lu.name})",
                tuple(signed(gap[0], lu) if gap else MISSING for gap in gaps),
            ),
            Column(
                "native − load (%)",
                tuple(
                    f"{'+' if gap[1] >= 0 else '−'}{percent(abs(gap[1]))}" if gap else MISSING
                    for gap in gaps
                ),
            ),
        ]
    )


def attribution_table(groups: Sequence[GroupSummary], fields: Sequence[str]) -> Table | None:
    """Counters measured during the native load (medians), one row per group."""
    groups = [g for g in groups if g.native_attribution]
    if not groups:
        return None
    names = list(dict.fromkeys(k for g in groups for k in g.native_attribution))

    def cell(v: float | int | str | None, name: str) -> str:
        if v is None:
            return MISSING
        if isinstance(v, str):
            return v
        if name.endswith("_bytes"):
            return human_bytes(v)
        if name.endswith("_s"):
            return human_seconds(v)
        return num(v, 0) if float(v).is_integer() else num(v)

    return make_table(
        [
            *key_columns(groups, fields),
            *[
                Column(name, tuple(cell(g.native_attribution.get(name), name) for g in groups))
                for name in names
            ],
        ]
    )


_ENV_ROWS: tuple[tuple[str, str], ...] = (
    ("cpu_model", "CPU"),
    ("cpu_count", "CPU cores"),
    ("ram_bytes", "RAM"),
    ("gpu_name", "GPU"),
    ("gpu_memory_bytes", "GPU memory"),
    ("gpu_driver", "GPU driver"),
    ("cuda", "CUDA"),
    ("gpu_pci_bus_id", "GPU PCI bus"),
    ("platform", "platform"),
    ("python", "Python"),
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("huggingface_hub", "huggingface_hub"),
    ("safetensors", "safetensors"),
    ("weights_filesystem", "weights filesystem"),
    ("weights_device", "weights device"),
    ("hostname", "hostname"),
    ("tool_version", "llmprof"),
)


def distinct_environments(groups: Sequence[GroupSummary]) -> list[Environment]:
    """Each distinct environment once, in group order (frozen records compare by value)."""
    return list(dict.fromkeys(g.environment for g in groups))


def environment_table(envs: Sequence[Environment]) -> Table:
    """The machine fingerprint: one row per field, one column per machine."""

    def cell(env: Environment, field: str) -> str:
        value = getattr(env, field)
        if value is None or value == "":
            return MISSING
        if field.endswith("_bytes"):
            return human_bytes(value)
        return str(value)

    rows = [(label, [cell(e, f) for e in envs]) for f, label in _ENV_ROWS]
    rows = [(label, cells) for label, cells in rows if informative(cells)]
    headers = ["machine" if len(envs) == 1 else f"machine {i + 1}" for i in range(len(envs))]
    return make_table(
        [
            Column("field", tuple(label for label, _ in rows), align="left"),
            *[
                Column(h, tuple(cells[i] for _, cells in rows), align="left")
                for i, h in enumerate(headers)
            ],
        ]
    )
