"""The ``grokspec`` console script: the command line when its extras are
installed, one clear line saying how to get them when they are not (a bare
``pip install grokspec`` is the numpy-only library)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    try:
        from grokspec.cli import main as cli_main
    except ModuleNotFoundError as error:
        print(
            f"error: grokspec's command line needs {error.name}, which is not installed; "
            "install the extras with: pip install 'grokspec[all]'",
            file=sys.stderr,
        )
        sys.exit(2)
    cli_main()


if __name__ == "__main__":
    main()
