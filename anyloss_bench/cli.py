"""The ``anyloss`` command: the top-level parser and :func:`main`.

Each subcommand lives in its own module, which adds its parser (``add_parser(subparsers)``) and runs it
(``run(args)``): ``compare`` (:mod:`anyloss_bench.compare`), ``reproduce`` (:mod:`anyloss_bench.reproduce`),
``speed`` (:mod:`anyloss_bench.speed`) and ``suite`` (:mod:`anyloss_bench.suite`).  What they share (loss names,
scores, batch sizes, folds, JSON) is in :mod:`anyloss_bench.common`.  No module of the package imports this one.
"""

from __future__ import annotations

import argparse
import sys

from . import compare, reproduce, speed, suite
from .data import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="anyloss", description="Train on the metric that matters: compare losses on your data.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    compare.add_parser(sub)
    reproduce.add_parser(sub)
    speed.add_parser(sub)
    suite.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        args.func(args)
    except UsageError as exc:
        print(f"anyloss: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
