"""The recorder: crash-safe recording of live market data from the bus to Parquet.

    columns.py   Arrow schemas; bus batches -> Arrow columns without per-event objects
    wal.py       the write-ahead log (Arrow IPC stream segments, fsync on a timer)
    store.py     the output location (folder or s3://), all-or-nothing writes
    promote.py   closed segments -> Parquet files, idempotently
    bars.py      1 s / 1 min bars from quotes (mid) and trades
    manifest.py  manifest.json, rebuildable from the files
    recovery.py  what to do with a write-ahead log a killed recorder left behind
    session.py   one recording session, tying the above together
    replay.py    a recording's events back, in recorded order
    service.py   `massive run recorder`
    cli.py       `massive record start|stop|status`

Nothing heavy is imported here, so `massive` starts quickly.
"""
