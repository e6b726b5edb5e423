"""The commands of ``authpulse`` (the parser and ``main`` are in
:mod:`authpulse._surfaces.cli`): a module per group, and the output, store and
exit-code helpers they share."""
