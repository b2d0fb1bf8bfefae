"""Input/output: TOML configuration, HDF5 dose files and physics-table caches."""
