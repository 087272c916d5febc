"""`composer` command line: argument parsing and output only."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from composer.cli import memo

    if not memo.usable(argv):
        from composer.cli.app import run

        return run(argv)
    path = memo.record_path(argv)
    code = memo.replay(path)
    if code is not None:
        return code
    recorder = memo.Recorder(path)
    from composer.cli.app import run

    code = 1  # what an escaping exception amounts to; never recorded
    try:
        code = run(argv)
    finally:
        recorder.finish(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
