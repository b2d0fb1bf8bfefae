"""brachymc.report."""
