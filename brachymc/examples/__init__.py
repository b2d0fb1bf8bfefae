"""brachymc.examples."""
