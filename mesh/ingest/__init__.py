"""Ingest: Massive's WebSocket to the bus, in columnar batches, surviving every kind of disconnect."""
