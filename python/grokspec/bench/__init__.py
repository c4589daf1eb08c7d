"""Side-by-side benchmarks: the engine against torch.linalg, numpy and
scipy (spectral), and the checkpoint scan (scan)."""
