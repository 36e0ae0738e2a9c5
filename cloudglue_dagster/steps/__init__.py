"""What each asset's step does for each UTC day of its run, whatever the warehouse.

* :mod:`.base`: the run's days, resuming, handing days on, the metadata rule (a partition's
  materialization describes that partition; the run's figures are an observation);
* :mod:`.chat_completions`: the paged sweep cut into days, the shrink guard;
* :mod:`.derived`: chat_messages, token_usage and collection_usage, each day built from
  chat_completions'.
"""

from .base import Step, frame_days, output_days, resume_runs, run_days
from .chat_completions import ChatCompletionsStep
from .derived import ChatMessagesStep, CollectionUsageStep, TokenUsageStep

__all__ = [
    "ChatCompletionsStep",
    "ChatMessagesStep",
    "CollectionUsageStep",
    "Step",
    "TokenUsageStep",
    "frame_days",
    "output_days",
    "resume_runs",
    "run_days",
]
