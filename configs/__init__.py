"""Built-in configuration data of brachymc (material library, spectra, example runs).

This folder is installed as the data package ``brachymc.configs``; it holds no code.
"""
