"""Typed exceptions. Every message names the file, field or value that is wrong."""


class BrachyMCError(Exception):
    """Base class of all errors raised by brachymc on bad input or impossible settings."""


class ConfigError(BrachyMCError):
    """A configuration file or setting is missing, malformed or impossible."""


class MaterialError(BrachyMCError):
    """An unknown material, or a material whose composition is invalid."""


class PhysicsDataError(BrachyMCError):
    """Interaction data cannot be built for the requested materials or energies."""


class GeometryError(BrachyMCError):
    """A phantom or source geometry is inconsistent (e.g. a source outside the phantom)."""


class BackendError(BrachyMCError):
    """The requested array backend is not available."""


class KernelBuildError(BrachyMCError):
    """The transport kernel cannot be built here (no C++ compiler, or no CUDA through CuPy)."""
