"""brachymc.pipeline."""
