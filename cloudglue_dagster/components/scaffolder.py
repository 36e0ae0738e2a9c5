"""``dg scaffold defs cloudglue_dagster.CloudglueComponent <folder>``: a ``defs.yaml`` that works as written.

The file names the API key's variable (never the key), a start date in the past, a DuckDB
file and a key prefix (by default the folder's name, so each account has its own), so ``dg check defs`` passes on it at once and ``dg dev`` can run it as soon as the
variable is set. Every choice can be given on the command line::

    dg scaffold defs cloudglue_dagster.CloudglueComponent cloudglue \\
        --api-key-env-var ACME_CLOUDGLUE_KEY --start-date 2026-01-01 --duckdb-path acme.duckdb
"""

from __future__ import annotations

import datetime as dt
import re

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from dagster.components.scaffold.scaffold import ScaffoldRequest
from pydantic import BaseModel, Field, field_validator

from cloudglue_dagster.assets.options import parse_start_date
from cloudglue_dagster.errors import CloudglueConfigError

__all__ = ["CloudglueScaffoldParams", "CloudglueScaffolder", "default_start_date", "prefix_for", "scaffolded_yaml"]

_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

DEFAULT_HISTORY_DAYS = 30
"""Without ``--start-date``: the first partition is this many UTC days before today."""


def default_start_date(today: dt.date | None = None) -> str:
    """``DEFAULT_HISTORY_DAYS`` UTC days before ``today`` (default: today, UTC), as ``YYYY-MM-DD``."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return (today - dt.timedelta(days=DEFAULT_HISTORY_DAYS)).isoformat()


class CloudglueScaffoldParams(BaseModel):
    """What ``dg scaffold defs`` asks (each a ``--option``; all have defaults)."""

    api_key_env_var: str = Field(
        default="CLOUDGLUE_API_KEY", description="NAME of the environment variable holding the API key."
    )
    start_date: str | None = Field(
        default=None, description=f"First daily partition, a past UTC date (default: {DEFAULT_HISTORY_DAYS} days ago)."
    )
    duckdb_path: str = Field(default="warehouse.duckdb", description="DuckDB file of the tables.")
    key_prefix: str | None = Field(
        default=None, description="Asset key prefix, one per account (default: the folder's name)."
    )

    def check(self) -> None:
        """Refuse a value that is not a variable name, without repeating it. (Not a pydantic
        validator: pydantic's errors print the input, and this one may be a pasted key.)"""
        if not _ENV_VAR_NAME.fullmatch(self.api_key_env_var):
            raise CloudglueConfigError(
                "--api-key-env-var must be the NAME of an environment variable (letters, digits and"
                " underscores, e.g. CLOUDGLUE_API_KEY), not the API key itself"
            )

    @field_validator("start_date")
    @classmethod
    def _a_past_day(cls, value: str | None) -> str | None:
        return None if value is None else parse_start_date(value).isoformat()


def prefix_for(folder: str) -> str:
    """A key prefix from a defs folder's name: what is not a letter, digit or ``_`` becomes ``_``
    (the prefix also names the job and the sensors, which allow nothing else)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", folder) or "cloudglue"


_RUN_SIZE_NOTE = (
    "# A range of days is one run, which `dg launch --partition-range A...B` needs; its memory is",
    "# that of its busiest days, not of its length (the tables are written day by day). To split",
    "# backfills launched from the UI into runs of at most 31 days, uncomment the line below; the",
    "# command line then refuses ranges (Dagster launches a range as one run only with single-run",
    "# backfills) and a range needs a backfill from the UI, with the daemon running (dg dev runs it).",
    "# max_partitions_per_run: 31",
)
_TEXT_STORAGE_NOTE = (
    "# Prompts and answers are stored as sent. To keep only their keyed hashes (they still join;",
    "# the secret key in the variable CLOUDGLUE_TEXT_HASH_KEY), or nothing, uncomment one of these:",
    "# text_storage: hash",
    "# text_storage: none",
)


def scaffolded_yaml(type_name: str, params: CloudglueScaffoldParams, folder: str = "cloudglue") -> str:
    """The ``defs.yaml`` text, with a comment on every line a newcomer would ask about."""
    prefix = params.key_prefix or prefix_for(folder)
    body = [
        ("account:", ""),
        (f"  api_key_env_var: {params.api_key_env_var}", "the variable's NAME: the key itself never goes in YAML"),
        (f'start_date: "{params.start_date or default_start_date()}"', "first daily partition (UTC)"),
        (f"key_prefix: {prefix}", f"assets {prefix}/chat_completions, ...; job {prefix}_daily"),
        ("io_manager:", ""),
        (f"  duckdb_path: {params.duckdb_path}", "relative to the working directory of Dagster"),
    ]
    width = max(len(line) for line, _ in body) + 2
    lines = [f"  {line:<{width}}# {note}" if note else f"  {line}" for line, note in body]
    # No max_partitions_per_run: a range is one run (the package's default), the only kind
    # `dg launch --partition-range` and `dagster asset materialize --partition-range` accept.
    lines += [f"  {line}" for line in (*_RUN_SIZE_NOTE, *_TEXT_STORAGE_NOTE)]
    return "\n".join(
        [
            "# One Cloudglue account: chat_completions, chat_messages and token_usage per UTC day, in DuckDB.",
            "# Every attribute and its default: cloudglue-dagster's docs/operations.md (The Dagster component).",
            f"type: {type_name}",
            "",
            "attributes:",
            *lines,
            "",
        ]
    )


class CloudglueScaffolder(dg.Scaffolder[CloudglueScaffoldParams]):
    """Writes :func:`scaffolded_yaml` (YAML) or Dagster's Python stub (``--format python``)."""

    @classmethod
    def get_scaffold_params(cls) -> type[CloudglueScaffoldParams]:
        return CloudglueScaffoldParams

    def scaffold(self, request: ScaffoldRequest[CloudglueScaffoldParams]) -> None:
        if request.scaffold_format != "yaml":
            scaffold_component(request)
            return
        params = request.params or CloudglueScaffoldParams()
        try:
            params.check()
        except CloudglueConfigError:
            if not request.append and request.target_path.is_dir() and not any(request.target_path.iterdir()):
                request.target_path.rmdir()  # dg made it for us: leave no empty folder to trip on
            raise
        folder = (request.target_path.parent if request.append else request.target_path).name
        text = scaffolded_yaml(request.type_name, params, folder)
        if request.append:  # target_path is then the existing defs.yaml, as in Dagster's own scaffold
            with open(request.target_path, "a", encoding="utf-8") as f:
                f.write("---\n" + text)
            return
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(text, encoding="utf-8")
