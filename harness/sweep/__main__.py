"""`python -m harness.sweep ...`: the sweep on its own (as `python -m harness sweep`)."""

from __future__ import annotations

import argparse
import sys

from harness.sweep import cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.sweep",
                                description="Every logit of a format through every backend, "
                                            "judged against the reference, on Dask.")
    cli.add_arguments(p)
    return cli.main(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
