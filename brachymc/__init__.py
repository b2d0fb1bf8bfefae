"""brachymc: Monte Carlo dose engine for I-125 seed brachytherapy.

Photon transport of the I-125 spectrum through voxel phantoms, written once against an
array namespace (NumPy on the CPU, CuPy on a GPU), with track-length collision-kerma
dose tallies and batch statistics.

Units inside the package: cm, g/cm3, keV. Doses leave the engine in Gy per history.
"""

__version__ = "0.1.0"

from brachymc.errors import BrachyMCError, ConfigError, MaterialError, PhysicsDataError  # noqa: E402
from brachymc.materials import Material, MaterialLibrary, default_library  # noqa: E402

__all__ = [
    "__version__",
    "BrachyMCError",
    "ConfigError",
    "MaterialError",
    "PhysicsDataError",
    "Material",
    "MaterialLibrary",
    "default_library",
]
