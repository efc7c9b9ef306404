"""`intent validate` and `intent import segment|table`: raw files in, event store out.

Imports map other tools' formats onto canonical events in `raw/<name>/events.parquet`;
`intent validate` checks every raw file, quarantines bad rows, deduplicates against the
store, derives sessions and rescores bots. A quarantined row is not an error: the command
exits 0 and says how many there were and why.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from core import cli_kit as kit

if TYPE_CHECKING:
    from features.ingest.event_store import IngestReport
    from features.ingest.importers.common import ImportResult

console = kit.console()


def _user_error_types() -> tuple[type[Exception], ...]:
    """Errors a user can cause here (bad file, bad mapping, bad config), imported lazily."""
    from core.settings import ConfigError
    from features.ingest.validate import InputError

    return InputError, ConfigError


import_app = typer.Typer(
    help="Import events from other tools' formats into data/raw/<name>/events.parquet.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add `validate`, the `import` group and `bench ingest` to the `intent` app."""
    app.command("validate")(validate_command)
    app.add_typer(import_app, name="import")
    kit.group(app, "bench", kit.BENCH_HELP).command("ingest")(bench_ingest_command)


# --- intent validate -----------------------------------------------------------------------


def validate_command(
    inputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--input",
            "-i",
            help="Events file (parquet or CSV); repeat for more. "
            "Default: every data/raw/*/events.parquet.",
        ),
    ] = None,
) -> None:
    """Validate raw events into the event store; bad rows go to the quarantine."""
    import numpy as np
    import pyarrow as pa

    from core.layout import Layout
    from core.settings import load_config
    from features.config import EventsConfig
    from features.ingest.event_store import STAGES, ingest, write_quarantine
    from features.ingest.validate import combine_inputs, read_input

    layout = Layout.from_env()
    with kit.user_errors(*_user_error_types()):
        cfg = load_config(EventsConfig, layout=layout)
        paths = list(inputs) if inputs else sorted(layout.raw.glob("*/events.parquet"))
        if not paths:
            raise kit.fail(
                f"nothing to validate: no {layout.raw}/*/events.parquet "
                "(run `intent simulate` or `intent import` first, or pass --input)"
            )
        with kit.progress() as progress:
            reading = progress.add_task("reading", total=len(paths))
            tables, rejected, lines = [], [], []
            for path in paths:
                read = read_input(path)
                tables.append(read.table)
                rejected.append(read.rejected)
                lines.append(read.lines)
                progress.advance(reading)
            unreadable = pa.concat_tables(rejected)
            unreadable_file = write_quarantine(layout, unreadable, "validate-rows")
            sources = pa.DictionaryArray.from_arrays(  # one source name per row, cheaply
                pa.array(np.repeat(np.arange(len(paths)), [t.num_rows for t in tables])),
                pa.array([_source_name(p, layout.raw) for p in paths], pa.string()),
            )
            stages = progress.add_task(STAGES[0], total=len(STAGES))
            report = ingest(
                layout,
                combine_inputs(tables),
                cfg,
                datetime.now(UTC),
                source=sources,
                on_stage=_stage_reporter(progress, stages),
                lines=pa.concat_arrays(lines),
            )
            progress.update(stages, completed=len(STAGES))
    _print_validation(report, paths, unreadable, unreadable_file)


def _stage_reporter(progress, task) -> Callable[[str], None]:
    from features.ingest.event_store import STAGES

    def report(stage: str) -> None:
        progress.update(task, description=stage, completed=STAGES.index(stage))

    return report


def _source_name(path: Path, raw: Path) -> str:
    """`raw/<name>/events.parquet` -> `<name>`; any other file -> its name."""
    resolved = path.resolve()
    if resolved.name == "events.parquet" and resolved.parent.parent == raw.resolve():
        return resolved.parent.name
    return path.name


def _print_validation(
    report: IngestReport, paths: list[Path], unreadable, unreadable_file: Path | None
) -> None:
    from collections import Counter

    from features.ingest.validate import REASON_DOC, Reason

    s = report.result.summary
    table = Table(title="intent validate", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("inputs", str(len(paths)))
    if unreadable.num_rows:
        table.add_row("unreadable CSV rows (quarantined)", f"{unreadable.num_rows:,}")
        for reason, count in sorted(Counter(unreadable["reason"].to_pylist()).items()):
            table.add_row(f"  {reason} ({REASON_DOC[Reason(reason)]})", f"{count:,}")
    table.add_row("rows in", f"{s.rows_in:,}")
    table.add_row("valid, new (stored)", f"{report.written:,}")
    table.add_row("duplicates removed", f"{s.duplicates_removed:,}")
    table.add_row("already in the store", f"{s.already_stored:,}")
    table.add_row("quarantined", f"{s.quarantined_total:,}")
    for reason, count in s.quarantined.items():
        table.add_row(f"  {reason} ({REASON_DOC[Reason(reason)]})", f"{count:,}")
    table.add_row("sessions derived", f"{s.sessions_derived:,}")
    table.add_row("sessions bot-scored", f"{report.bot_sessions_scored:,}")
    table.add_row("bot sessions flagged", f"{report.bot_sessions_flagged:,}")
    console.print(table)
    for path in (unreadable_file, report.quarantine_file):
        if path is not None:
            console.print(f"quarantine: {path}", highlight=False, soft_wrap=True)


# --- intent import -------------------------------------------------------------------------


@import_app.command("segment")
def import_segment_command(
    file: Annotated[Path, typer.Argument(help="Segment / RudderStack JSON-lines export.")],
    mapping: Annotated[
        Path | None,
        typer.Option(help="Mapping YAML (kind: segment). Default: configs/mappings/segment.yaml."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Source name (data/raw/<name>/). Default: the mapping's.")
    ] = None,
    suggest_mapping: Annotated[
        bool,
        typer.Option(
            "--suggest-mapping",
            help="Import nothing: list the file's event, page / screen and step names and "
            "property keys with counts, and write a mapping skeleton to edit (--out).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where --suggest-mapping writes the skeleton. Default: data/mappings/<file>.yaml."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Let --suggest-mapping replace an existing file.")
    ] = False,
) -> None:
    """Map Segment track / page / screen / identify messages onto canonical events."""
    from core.layout import Layout
    from features.ingest.importers.mapping import SegmentMapping, load_mapping
    from features.ingest.importers.segment import import_segment
    from features.ingest.validate import InputError

    layout = Layout.from_env()
    with kit.user_errors(*_user_error_types()):
        default = layout.config_file(Path("mappings") / "segment.yaml")
        spec = load_mapping(mapping or default, SegmentMapping)
        if not file.is_file():
            raise InputError(f"{file}: no such file")
        funnel = _funnel(layout)
        if suggest_mapping:
            _suggest(layout, file, spec, funnel, out, force)
            return
        with kit.progress() as progress:
            progress.add_task(f"importing {file.name}", total=None)
            result = import_segment(file, spec, steps=funnel)
        _write_and_print(layout, name or spec.name, result)


@import_app.command("table")
def import_table_command(
    files: Annotated[list[Path], typer.Argument(help="CSV / parquet files to import together.")],
    mapping: Annotated[Path, typer.Option(help="Mapping YAML (kind: table).")],
    name: Annotated[
        str | None, typer.Option(help="Source name (data/raw/<name>/). Default: the mapping's.")
    ] = None,
) -> None:
    """Map CSV / parquet rows onto canonical events with a column mapping."""
    from core.layout import Layout
    from features.ingest.importers.mapping import TableMapping, load_mapping
    from features.ingest.importers.table import import_tables

    layout = Layout.from_env()
    with kit.user_errors(*_user_error_types()):
        spec = load_mapping(mapping, TableMapping)
        funnel = _funnel(layout)
        with kit.progress() as progress:
            progress.add_task(f"importing {len(files)} file(s)", total=None)
            result = import_tables(files, spec, steps=funnel)
        _write_and_print(layout, name or spec.name, result)


def _funnel(layout) -> list[str]:
    from core.settings import load_config
    from features.config import FunnelConfig

    return load_config(FunnelConfig, layout=layout).steps


def _suggest(layout, file: Path, spec, funnel: list[str], out: Path | None, force: bool) -> None:
    from features.ingest.importers.suggest import skeleton, survey
    from features.ingest.validate import InputError

    path = out or layout.data / "mappings" / f"{file.stem}.yaml"
    if path.exists() and not force:  # it may hold the user's edits
        raise InputError(f"{path} exists (your edits?): pass --out elsewhere or --force")
    with file.open("rb") as handle:
        found = survey(handle, spec)
    _print_survey(found)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(skeleton(found, spec, funnel, str(file)))
    console.print(f"mapping skeleton: {path}", highlight=False, soft_wrap=True)
    console.print(
        f"next: edit it, then intent import segment {file} --mapping {path}", highlight=False
    )


def _print_survey(found) -> None:
    summary = Table(title="lines", show_header=False, title_justify="left")
    summary.add_column("what")
    summary.add_column("count", justify="right")
    summary.add_row("lines", f"{found.lines:,}")
    summary.add_row("blank", f"{found.blank:,}")
    summary.add_row("not a JSON object", f"{found.not_json:,}")
    for call, count in found.calls.most_common():
        summary.add_row(f"call {call}", f"{count:,}")
    console.print(summary)
    for title, counts in (
        ("track event names", found.track),
        ("page / screen names", found.pages),
        ("step names (as the mapping reads them)", found.steps),
        ("property keys", found.key_counts()),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column("name")
        table.add_column("count", justify="right")
        for key, count in counts.most_common():
            table.add_row(key, f"{count:,}")
        console.print(table)


def _write_and_print(layout, name: str, result: ImportResult) -> None:
    from core.settings import load_config
    from features.config import EventsConfig
    from features.ingest.event_store import write_quarantine
    from features.ingest.importers.common import refusal, write_import
    from features.ingest.validate import REASON_DOC, Reason

    limits = load_config(EventsConfig, layout=layout).imports
    refused = refusal(result.summary, limits)
    s = result.summary
    table = Table(title=f"intent import ({name})", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("records in", f"{s.records_in:,}")
    table.add_row("events", f"{s.events:,}")
    table.add_row("quarantined", f"{sum(s.quarantined.values()):,}")
    for reason, count in s.quarantined.items():
        table.add_row(f"  {reason} ({REASON_DOC[Reason(reason)]})", f"{count:,}")
    for what, count in s.skipped.items():
        table.add_row(f"skipped: {what}", f"{count:,}")
    console.print(table)
    if refused is not None:
        quarantine_path = write_quarantine(layout, result.quarantine, f"import-{name}")
        console.print(f"quarantine: {quarantine_path}", highlight=False, soft_wrap=True)
        raise kit.fail(refused)
    events_path, quarantine_path = write_import(layout, name, result)
    console.print(f"events: {events_path}", highlight=False, soft_wrap=True)
    if quarantine_path is not None:
        console.print(f"quarantine: {quarantine_path}", highlight=False, soft_wrap=True)
    console.print("next: intent validate", highlight=False)


# --- intent bench ingest -------------------------------------------------------------------


def bench_ingest_command(
    rows: Annotated[
        int, typer.Option(min=1000, help="Synthetic raw events to validate.")
    ] = 500_000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic events.")] = 0,
) -> None:
    """Throughput of validation, ingestion (store + bot scores), re-run and Segment import."""
    import json
    import tempfile

    from bench.ingest import bench_ingest
    from core.layout import Layout
    from core.settings import load_config
    from features.config import EventsConfig

    with kit.user_errors(*_user_error_types()):
        cfg = load_config(EventsConfig, layout=Layout.from_env())
        with (
            tempfile.TemporaryDirectory(prefix="intent-bench-ingest-") as tmp,
            kit.progress() as progress,
        ):
            progress.add_task(f"benchmarking {rows:,} events", total=None)
            result = bench_ingest(rows, seed, Path(tmp), cfg)
    typer.echo(json.dumps(result, indent=2))
