"""The authpulse benchmark suite (not tests: it prints measured figures).

Run it with ``python benchmarks/run.py`` (``--quick`` for a few-second smoke
run). Each module exposes one ``run_*`` function returning a
:class:`benchmarks._common.Section`; ``run.py`` renders them.
"""
