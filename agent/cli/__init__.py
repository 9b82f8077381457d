"""The ``fwagent`` command.

Exit codes: 0 success (for ``verify``: accepted), 1 failure (for ``verify``:
rejected, last line ``rejected: <reason-code>: <detail>``), 2 usage. Errors
are one line, ``error: <code>: <detail>``, never a traceback.

The package: ``parser`` (every command's arguments, importing no command), ``output`` (exit
codes, JSON), and one module per group of commands (``install``, ``things``, ``manifest``,
``bundle``, ``check``, ``policy``), each imported only when one of its commands runs.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.output import EXIT_FAILED, EXIT_USAGE, emit_json
from agent.cli.parser import build_parser
from agent.errors import FwagentError, ManifestError, UsageError, code_and_detail

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not hasattr(args, "run"):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return _run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)            # imports the command's module: Ctrl-C may come here too
    except ManifestError as err:
        if getattr(args, "rejects", False):
            _emit_rejection(args, err)
            return EXIT_FAILED
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_FAILED
    except UsageError as err:
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except FwagentError as err:
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:  # what no module turned into an FwagentError: still one line
        print("error: {}: {}".format(*code_and_detail(err)), file=sys.stderr)
        return EXIT_FAILED


def _emit_rejection(args: argparse.Namespace, err: ManifestError) -> None:
    if getattr(args, "json", False):
        emit_json({"accepted": False, "reason": err.code, "detail": err.detail})
        print(f"rejected: {err.one_line()}", file=sys.stderr)
    else:
        print(f"rejected: {err.one_line()}")
