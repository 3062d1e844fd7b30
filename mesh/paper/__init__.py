"""Paper trading: a backtester strategy run live on the bus, proved against the backtest of the
recording of the same session.

    engine.py   one symbol traded live exactly as the backtester trades the recording
    session.py  a paper session: its spec, its symbols' traders, its journal on disk
    service.py  `massive run strategy`: sessions from the control channel, quotes from the bus
    compare.py  `massive paper compare`: the backtest of the session's recording, fill for fill
"""
