"""The Cloudglue API, without Dagster or pandas: the list endpoints' client, records and days.

* :mod:`.client`: :class:`~.client.CloudglueClient`, the API a user calls (chat completions
  and responses); :mod:`.params`: what it checks before sending; :mod:`.fan_out`: pages
  fetched concurrently;
* :mod:`.transport`: one GET with its retries, errors and size limits; :mod:`.deadline`: the
  per-request deadline; :mod:`.throttle`: the concurrency limit; :mod:`.loopback`: which hosts
  are this machine (and a loopback HTTP server for the emulator and tests);
* :mod:`.sweep`: paging a window and verifying the pages; :mod:`.window`: the date-boundary
  padding; :mod:`.days`: a sweep cut into UTC days;
* :mod:`.models`: the typed records; :mod:`.decoding`: the msgspec fast path; :mod:`.parsing`:
  the careful path that explains a bad body; :mod:`.responses`: the Responses API's records
  and both their paths;
* :mod:`.secrecy`: key checks and redaction (texts, exception chains, a logger).

The sweep, the window and the days are the same for every endpoint: they read a record's
``id`` and ``created_at`` only (:class:`~.sweep.Record`). A new endpoint adds its records and
their parsers here, and a listing method to the client.
Nothing is imported here: the public names are re-exported by :mod:`cloudglue_dagster`.
"""
