"""What brachymc keeps in its cache folder, and emptying it (``brachymc cache info | clear``).

The folder (:func:`brachymc._paths.cache_dir`: ``BRACHYMC_CACHE_DIR``, else
``$XDG_CACHE_HOME/brachymc``, else ``~/.cache/brachymc``) holds results that are expensive to
compute and cheap to recompute, each keyed by a hash of everything it depends on, so a stale entry
is never read, only left behind:

* ``physics-<key>.h5``: interaction tables of one set of media (``mc.tables_cache``), ~1-20 MB each;
* ``sk-<model>-<key>.json``: air-kerma strength per history of a seed model (``mc.air_kerma``);
* ``kernels/``: the kernel engine's compiled CPU builds (``mc.kernel_build``).

Clearing removes only these entries (never other files in the folder, in case it was pointed at
a shared place); the next run rebuilds what it needs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from brachymc._paths import cache_dir

#: kind -> (description, glob patterns relative to the cache folder)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "physics": ("physics tables (interaction data of a set of media)", ("physics-*.h5", "physics-*.h5.tmp*")),
    "sk": ("air-kerma strength per history of seed models", ("sk-*.json", "sk-*.json.tmp*")),
    "kernels": ("compiled kernel-engine builds", ("kernels",)),
}


@dataclass(frozen=True)
class CacheEntry:
    kind: str
    path: Path
    size_bytes: int


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def cache_entries(folder: Path | None = None) -> list[CacheEntry]:
    """The brachymc entries in the cache folder, by kind, sorted by name."""
    folder = Path(folder) if folder is not None else cache_dir()
    out: list[CacheEntry] = []
    if not folder.is_dir():
        return out
    for kind, (_, patterns) in KINDS.items():
        seen = set()
        for pat in patterns:
            for p in sorted(folder.glob(pat)):
                if p not in seen:
                    seen.add(p)
                    out.append(CacheEntry(kind, p, _size(p)))
    return out


def clear_cache(kinds: tuple[str, ...] = tuple(KINDS), folder: Path | None = None) -> list[CacheEntry]:
    """Remove the entries of ``kinds``; returns what was removed."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown cache kind(s) {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    removed = []
    for e in cache_entries(folder):
        if e.kind in kinds:
            if e.path.is_dir():
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                e.path.unlink(missing_ok=True)
            removed.append(e)
    return removed


def format_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"  # pragma: no cover


__all__ = ["KINDS", "CacheEntry", "cache_entries", "clear_cache", "format_size"]
