"""The shells' one source of time and of HTTP: the clock, the httpx/httpx2 backend,
the breakers, the event bus and journal, and the drivers of the sync/async flows.
"""
