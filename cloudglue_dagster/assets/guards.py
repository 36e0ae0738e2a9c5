"""The shrink guard: a replace must not empty stored days on the API's word alone.

Standard library only. A sweep that passed every consistency check (:mod:`cloudglue_dagster.api.sweep`) can still
be wrong as a whole: a key of another account, an API-side data loss, an outage answering
empty lists all answer with a self-consistent, smaller window. Replacing a day "exactly" would
then delete good rows. So each day's new row count is compared with the rows the warehouse
itself holds for that day (whatever Dagster's instance remembers: a new, ephemeral or wiped
instance is protected the same); a day that would lose more than ``max_loss_fraction`` of at
least ``min_stored_rows`` stored rows is not written. The run writes its other days, then
fails naming every refused day with its stored and new counts. ``allow_shrink`` (run config,
or the run tag ``cloudglue/allow_shrink=true``) accepts the loss: deletions that really
happened upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cloudglue_dagster.errors import CloudglueConfigError, CloudglueError

__all__ = ["ALLOW_SHRINK_CONFIG", "ALLOW_SHRINK_TAG", "ShrinkGuard", "ShrinkRefusedError", "allow_shrink_config"]

ALLOW_SHRINK_TAG = "cloudglue/allow_shrink"
"""Run tag that lets a run replace days with far fewer rows (value ``true``)."""


@dataclass(frozen=True)
class ShrinkGuard:
    """When a replace counts as a sharp shrink of a stored day.

    Attributes:
        max_loss_fraction: the share of a day's stored rows a replace may remove, 0..1
            (exclusive of 1). Default 0.5: a day may halve, not more.
        min_stored_rows: days with fewer stored rows are never guarded (a quiet day of 3
            completions that becomes 1 is ordinary). Default 20.
    """

    max_loss_fraction: float = 0.5
    min_stored_rows: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.max_loss_fraction < 1:
            raise CloudglueConfigError(f"max_loss_fraction must be in [0, 1), got {self.max_loss_fraction!r}")
        if (
            isinstance(self.min_stored_rows, bool)
            or not isinstance(self.min_stored_rows, int)
            or self.min_stored_rows < 1
        ):
            raise CloudglueConfigError(f"min_stored_rows must be an integer >= 1, got {self.min_stored_rows!r}")

    def shrinking(self, stored: Mapping[str, int], new: Mapping[str, int]) -> list[tuple[str, int, int]]:
        """``(day, stored rows, new rows)`` of each day of ``new`` that would shrink sharply;
        days without a stored count (never loaded) are fine."""
        out = []
        for day in sorted(new):
            before = stored.get(day)
            if before is None or before < self.min_stored_rows:
                continue
            if before - new[day] > self.max_loss_fraction * before:
                out.append((day, before, new[day]))
        return out


ALLOW_SHRINK_CONFIG = "allow_shrink"
"""The run config field (of the assets' op) that lets a run replace days with far fewer rows."""


def allow_shrink_config(op_name: str) -> str:
    """The ``--config-json`` value that sets :data:`ALLOW_SHRINK_CONFIG` for ``op_name``."""
    return f'{{"ops": {{"{op_name}": {{"config": {{"{ALLOW_SHRINK_CONFIG}": true}}}}}}}}'


class ShrinkRefusedError(CloudglueError):
    """A run would have replaced stored days with far fewer rows; those days were not written.

    Permanent: the same answer would be refused again. Attributes: ``days``, a list of
    ``(day, stored rows, new rows)``.
    """

    def __init__(
        self,
        days: list[tuple[str, int, int]],
        guard: ShrinkGuard,
        *,
        op_name: str = "<op>",
        witness: str = "the warehouse",
        records: str = "completions",
    ):
        listed = ", ".join(f"{d}: {before} -> {after}" for d, before, after in days)
        super().__init__(
            f"Refused to replace {len(days)} stored day(s) with far fewer rows ({listed}): each would"
            f" lose more than {guard.max_loss_fraction:.0%} of the rows {witness} holds for it. The API's"
            " answer was self-consistent, but an API key of another account, an API-side data loss or"
            " an outage answering empty lists looks exactly like this. These days keep their stored rows"
            f" in every table. If the {records} really were deleted upstream, run these days again with"
            " allow_shrink: on the command line"
            f" `dagster asset materialize ... --config-json '{allow_shrink_config(op_name)}'`; in the UI,"
            f" the Launchpad's config ({ALLOW_SHRINK_CONFIG}: true) or the run tag {ALLOW_SHRINK_TAG}=true;"
            f" in Python, the same run_config or tag."
        )
        self.days = days
