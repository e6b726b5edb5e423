"""Where sessions and tokens are kept: the store protocol, memory, SQLite and Redis
stores, record codecs and encryption, the cross-process lock, ``open_store``.
"""
