"""Structured notes of a patient run: what the console, ``summary.json`` and the report list.

A :class:`Note` is its sentence (a ``str``, so lists of notes print and serialise as plain text)
that also carries a stable ``code`` (for programs reading ``summary.json``), a ``level``
(``info``: how the run was set up; ``warning``: something to look at before trusting a number)
and the data behind it (ROI names, volumes, seeds).
"""

from __future__ import annotations


class Note(str):
    """One sentence about a run, with ``code``, ``level`` and ``data``."""

    code: str
    level: str
    data: dict

    def __new__(cls, code: str, text: str, data: dict | None = None, level: str = "info") -> "Note":
        if level not in ("info", "warning"):
            raise ValueError(f"note level must be 'info' or 'warning', got {level!r}")
        obj = super().__new__(cls, text)
        obj.code, obj.level, obj.data = str(code), level, dict(data or {})
        return obj

    @property
    def text(self) -> str:
        return str.__str__(self)

    def to_json(self) -> dict:
        return {"code": self.code, "level": self.level, "message": self.text, **self.data}


def as_note(item) -> Note:
    """A :class:`Note` from a note or a plain sentence (code ``"note"``)."""
    return item if isinstance(item, Note) else Note("note", str(item))
