"""The steps of a report after the calls, each run guarded.

What a run measured is never lost to a later step: `report.json` is written as
soon as the records are in, and every step after that (shrinking, validation,
the HTML page, the terminal summary) runs inside `Phases.run`, which records how
it ended (`run.phases` in the report: phase, status ok or failed, seconds, why)
instead of letting an exception end the command with a traceback.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _ours(filename: str) -> str | None:
    """The path of a file of this project (not of an installed package), else None."""
    try:
        rel = Path(filename).resolve().relative_to(ROOT)
    except (ValueError, OSError):
        return None
    return None if rel.parts and rel.parts[0].startswith(".") else str(rel)


def _short(filename: str) -> str:
    parts = Path(filename).parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1:])
    return _ours(filename) or Path(filename).name


def why(exc: BaseException) -> str:
    """One line: the exception, its message, and where it was raised (the innermost
    frame of this project if there is one, else the innermost frame)."""
    message = getattr(exc, "message", None)  # jsonschema: the message without the schema
    if isinstance(message, str) and getattr(exc, "json_path", None):
        text = f"{message} (at {exc.json_path})"  # type: ignore[attr-defined]
    else:
        text = str(exc)
    text = " ".join(text.split())
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if _ours(f.filename)]
    frame = (ours or frames or [None])[-1]
    if frame is not None:
        what = f"{what[:400]} (raised at {_short(frame.filename)}:{frame.lineno})"
    return what[:500]


class Phases:
    """How each step of a report ended, in order: the `run.phases` list."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.interrupted = False

    @contextlib.contextmanager
    def run(self, phase: str) -> Iterator[dict[str, Any]]:
        """Run the `with` block as `phase`: an exception is recorded, never raised.

        Ctrl-C is recorded too ("interrupted") and sets `interrupted`, so the
        caller skips what is optional and still writes what it has.
        """
        entry: dict[str, Any] = {"phase": phase, "status": "ok", "seconds": 0.0, "why": None}
        start = time.monotonic()
        try:
            yield entry
        except KeyboardInterrupt:
            self.interrupted = True
            entry.update(status="failed", why="interrupted")
        except Exception as exc:
            entry.update(status="failed", why=why(exc))
        finally:
            entry["seconds"] = round(time.monotonic() - start, 3)
            self.records.append(entry)

    def ok(self, phase: str) -> bool:
        """Whether `phase` ran and ended well."""
        return any(p["phase"] == phase and p["status"] == "ok" for p in self.records)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The phases that failed for a reason other than an interruption."""
        return [p for p in self.records if p["status"] == "failed" and p["why"] != "interrupted"]


__all__ = ["Phases", "why"]
