"""Offline scans of checkpoint directories (SPEC §5): discovery, checkpoint
formats, the cache, the scan itself, trajectories, events, the report,
calibration, the plot and the output files. Needs pandas (and torch for
PyTorch pickles and representation forward passes)."""
