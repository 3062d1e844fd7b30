"""The fetcher: history over REST or S3 flat files, chosen automatically, within the account's quota.

Modules, one idea each: `request` (checking a request before anything is spent), `plan` (method
and cost), `ledger` (the quota shared by every process), `rest` and `flatfiles` (the two sources),
`minutefile` (reading a day file fast), `bars` (resampling, identical for both sources), `fetch`
(the run, with fallback), `datasets` (data/historical/), `backfill` (ingest's gaps), `service`
and `cli` (the mesh service and `massive fetch` / `massive quota`). The public Python API is
`mesh.historical`.
"""
