"""Records to tables, with pandas and without Dagster.

* :mod:`.frames`: the column contracts (``Column``) and each table's frame built from records;
* :mod:`.usage`: the token-usage sums and the collection attribution rule;
* :mod:`.streams`: what a run hands its warehouse: every table of a day, together.

A new column goes into its table's contract in :mod:`.frames` (and docs/tables.md).
"""
