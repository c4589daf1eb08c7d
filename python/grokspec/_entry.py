"""The ``grokspec`` console script: the command line when its extras are
installed, one clear line saying how to get them when they are not (a bare
``pip install grokspec`` is the numpy-only library)."""

from __future__ import annotations

from grokspec._extras import exit_missing_extra

__all__ = ["main"]


def main() -> None:
    try:
        from grokspec.cli import main as cli_main
    except ModuleNotFoundError as error:
        exit_missing_extra("grokspec's command line", error.name)
    cli_main()


if __name__ == "__main__":
    main()
