"""Seeds from the post-implant CT: find every seed (centre and axis), clusters included.

:func:`find_seeds` is the entry point; the method is described in ``docs/seed_finding.md``.
"""

from brachymc.seedfinder.finder import (Cluster, FinderSettings, FoundSeed, MetalObject, NoMetalError,
                                        SeedFindResult, find_seeds)
from brachymc.seedfinder.scoring import SeedScore, match_seeds, score_seeds

__all__ = ["find_seeds", "FinderSettings", "FoundSeed", "Cluster", "MetalObject", "NoMetalError",
           "SeedFindResult", "SeedScore", "match_seeds", "score_seeds"]
