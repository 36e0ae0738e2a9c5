"""The Cloudglue API, without Dagster or pandas: one endpoint's client, its records and its days.

* :mod:`.client`: :class:`~.client.CloudglueClient`, the API a user calls;
* :mod:`.transport`: one GET with its retries, errors and size limits; :mod:`.deadline`: the
  per-request deadline; :mod:`.throttle`: the concurrency limit; :mod:`.loopback`: which hosts
  are this machine (and a loopback HTTP server for the emulator and tests);
* :mod:`.sweep`: paging a window and verifying the pages; :mod:`.window`: the date-boundary
  padding; :mod:`.days`: a sweep cut into UTC days;
* :mod:`.models`: the typed records; :mod:`.decoding`: the msgspec fast path; :mod:`.parsing`:
  the careful path that explains a bad body;
* :mod:`.secrecy`: key checks and redaction (texts, exception chains, a logger).

A second endpoint adds its records, its decoding and its paging rules here, beside these.
Nothing is imported here: the public names are re-exported by :mod:`cloudglue_dagster`.
"""
