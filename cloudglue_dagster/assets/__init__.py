"""The Dagster side: the factory and what its assets are made of.

* :mod:`.factory`: :func:`~.factory.build_cloudglue_assets`, the multi-asset of every table,
  the job; :mod:`.options`: the factory's options; :mod:`.translator`: each table's key, group,
  owners, tags and kinds;
* :mod:`.steps`: the one step behind every table;
* :mod:`.checks`: the asset checks (rules are plain functions); :mod:`.usage_checks`: checks
  comparing two tables; :mod:`.sensors`: the freshness checks and the late-data sensor;
  :mod:`.automation`: the schedule and sensors;
* :mod:`.metadata`, :mod:`.metadata_keys`: per-partition metadata and its keys;
  :mod:`.partitions`: partition slicing and account names;
* :mod:`.guards`: the shrink guard; :mod:`.run_control`: step retries and termination;
  :mod:`.masking`: the API key masked out of what a run shows.
"""
