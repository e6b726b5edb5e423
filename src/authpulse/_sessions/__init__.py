"""The token engine: ``Session`` over single flight, token sources, the fallback
chain, cross-process coordination, JWT verification and the httpx ``Auth``.
"""
