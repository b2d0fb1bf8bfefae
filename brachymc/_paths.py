"""Where brachymc finds its built-in configuration files and its cache."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """The folder holding the built-in configs (materials, spectra, examples).

    ``BRACHYMC_CONFIG_DIR`` overrides it. In a source checkout this is ``<repo>/configs``;
    in an installed wheel the same files are the package ``brachymc.configs``.
    """
    env = os.environ.get("BRACHYMC_CONFIG_DIR")
    if env:
        return Path(env)
    try:
        import brachymc.configs as _cfg

        return Path(_cfg.__file__).resolve().parent
    except ImportError:  # pragma: no cover - only in a broken install
        return Path(__file__).resolve().parents[1] / "configs"


def reference_dir() -> Path:
    """Published reference data (TG-43U1 tables, NIST coefficients, tissue compositions, ...).

    ``BRACHYMC_REFERENCE_DIR`` overrides it; otherwise the copy shipped as package data in
    ``configs/reference`` (``brachymc.configs.reference``), whose README names every source.
    """
    env = os.environ.get("BRACHYMC_REFERENCE_DIR")
    if env:
        return Path(env)
    return config_dir() / "reference"


def cache_dir() -> Path:
    """Folder for cached physics tables, S_K per history and compiled kernels
    (``BRACHYMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/brachymc``, else ``~/.cache/brachymc``);
    ``brachymc cache info | clear`` shows and empties it."""
    env = os.environ.get("BRACHYMC_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brachymc"
    return base
