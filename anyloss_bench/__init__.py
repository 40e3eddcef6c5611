"""anyloss_bench: the ``anyloss`` command (compare losses on data) and its datasets and engines.

Imports the core only; a framework adapter is loaded when ``--backend`` asks for it.
"""
