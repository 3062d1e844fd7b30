"""Publishing market data into kdb+: the `kdb` service (`massive run kdb`) and `massive kdb load`.

The modules, one idea each:

- `schema`: the record-field -> q column mapping, in one place (also renders `q/sym.q`).
- `encode`: columns -> one kdb+ IPC `.u.upd` message, converted with PyKX (unlicensed mode).
- `ipc`: the socket to the tickerplant: handshake, async send, sync round trip.
- `buffer`: the bounded queue in front of the sender, and the replay buffer behind it.
- `sender`: the thread that owns the connection: reconnects, confirms, replays.
- `batcher`: bus batches -> chunks of at most N rows, flushed after T ms at the latest.
- `service`: the `kdb` service on the bus; `load` and `cli`: `massive kdb load DATASET`.

Importing this package is cheap: PyKX is only imported by `encode`.
"""
