/ sym.q: the massive-mesh tables for KX's kdb+tick
/ 2026.11.22 quote, trade and bar, matching protocol version 1 (docs/protocol.md)
/ 2026.12.07 order, fill and pnl: paper trading's records (strat.* on the bus)
/ usage: copy to tick/sym.q in a kdb-tick checkout, then
/   q tick.q sym <logdir> -p 5010
/ The publisher (`massive run kdb`, `massive kdb load`) sends async .u.upd[table;columns] with the
/ columns below, in this order. These lines are what `massive kdb schema` prints, and the tests check
/ that the two agree; docs/kdb.md maps each record field to its column.
/ time: time of day (UTC) of the event (quote, trade) or of the bar's start. The date is the
/       tickerplant's, as usual in kdb+tick; ts_* columns carry full UTC timestamps.
/ ts_*: timestamp, UTC; 0Np where the source did not say.

/ quote: one row per NBBO update
/  time timespan, sym symbol, bid_price float, bid_size long, ask_price float, ask_size long,
/  bid_exchange long, ask_exchange long, condition long, tape long, sequence long,
/  ts_event timestamp, ts_recv timestamp
quote:([]time:`timespan$();sym:`g#`symbol$();bid_price:`float$();bid_size:`long$();ask_price:`float$();ask_size:`long$();bid_exchange:`long$();ask_exchange:`long$();condition:`long$();tape:`long$();sequence:`long$();ts_event:`timestamp$();ts_recv:`timestamp$())

/ trade: one row per trade print
/  time timespan, sym symbol, price float, size long, exchange long,
/  trade_id string (a char vector per row), conditions long list (a long vector per row),
/  tape long, sequence long, ts_event timestamp, ts_recv timestamp
trade:([]time:`timespan$();sym:`g#`symbol$();price:`float$();size:`long$();exchange:`long$();trade_id:();conditions:();tape:`long$();sequence:`long$();ts_event:`timestamp$();ts_recv:`timestamp$())

/ bar: one row per OHLCV bar, 1s and 1m bars together (interval says which)
/  time timespan, sym symbol, interval symbol (`1s`1m), ts_start timestamp, ts_end timestamp,
/  open float, high float, low float, close float, volume float, vwap float, transactions long,
/  ts_recv timestamp, replaces boolean (1b: overwrite the bar with the same sym, interval, ts_start)
bar:([]time:`timespan$();sym:`g#`symbol$();interval:`symbol$();ts_start:`timestamp$();ts_end:`timestamp$();open:`float$();high:`float$();low:`float$();close:`float$();volume:`float$();vwap:`float$();transactions:`long$();ts_recv:`timestamp$();replaces:`boolean$())

/ order: one row per paper order (a strategy's new target for a symbol, decided at a bar's close)
/  time timespan (of ts_decided), sym symbol, name symbol (the paper session), qty float (signed
/  shares wanted, + buy, - sell), target float (fraction of equity), bar_end timestamp,
/  ts_decided timestamp, order_id long (1, 2, ... per session and symbol)
order:([]time:`timespan$();sym:`g#`symbol$();name:`symbol$();qty:`float$();target:`float$();bar_end:`timestamp$();ts_decided:`timestamp$();order_id:`long$())

/ fill: one row per execution of a paper order against a quote
/  time timespan (of ts_event), sym symbol, name symbol, order_id long, qty float (signed shares),
/  price float, ref_price float (the quote's mid), fee float, ts_event timestamp,
/  position float (shares held after it), cash float (the symbol's cash after it)
fill:([]time:`timespan$();sym:`g#`symbol$();name:`symbol$();order_id:`long$();qty:`float$();price:`float$();ref_price:`float$();fee:`float$();ts_event:`timestamp$();position:`float$();cash:`float$())

/ pnl: one row per paper session, symbol and bar close
/  time timespan (of ts), sym symbol, name symbol, ts timestamp (the bar's close), position float,
/  cash float, equity float, initial_cash float, fill_count long (fills so far; the record's
/  `fills`, which is a q keyword)
pnl:([]time:`timespan$();sym:`g#`symbol$();name:`symbol$();ts:`timestamp$();position:`float$();cash:`float$();equity:`float$();initial_cash:`float$();fill_count:`long$())
