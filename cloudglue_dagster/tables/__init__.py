"""Records to tables, with pandas and without Dagster.

* :mod:`.frames`: the column contracts (``Column``) and each table's frame built from records;
* :mod:`.usage`: the token-usage sums and the collection attribution rule;
* :mod:`.spend`: the Responses API's table and LLM spend across both endpoints (``llm_usage``);
* :mod:`.prices`: model prices over time and the one cost rule of every cost column;
* :mod:`.lineage`: each derived column's source columns (Dagster's column lineage);
* :mod:`.streams`: what a run hands its warehouse: every table of a day, together.

A new column goes into its table's contract in :mod:`.frames` (and docs/tables.md).
"""
