/ sub.q: a small real-time subscriber to the massive-mesh tickerplant
/ usage: q q/sub.q [host:port]        (default localhost:5010)
/ Subscribes to every table (.u.sub[`;`]), counts the rows it receives per table and keeps the
/ last quote per symbol; prints both once a second. A starting point for your own subscriber.

tp:$[count .z.x;first .z.x;"localhost:5010"];
h:hopen `$":",tp;

n:`quote`trade`bar`order`fill`pnl!0 0 0 0 0 0;                       / rows received per table
lastquote:([sym:`symbol$()] time:`timespan$(); bid_price:`float$(); ask_price:`float$());

/ the tickerplant calls upd[table;rows] for every update (rows is a table)
upd:{[t;x]
  @[`n;t;+;count x];
  if[t=`quote; `lastquote upsert select last time, last bid_price, last ask_price by sym from x];
  };

h(".u.sub";`;`);                                            / all tables, all symbols

.z.ts:{
  -1 string[.z.T]," rows received: ",", " sv {x,": ",string y}'[string key n;value n];
  if[count lastquote; show lastquote];
  };
\t 1000
