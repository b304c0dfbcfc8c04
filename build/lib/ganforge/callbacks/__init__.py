"""Callbacks of a run: checkpoints, sample grids, progress display."""
