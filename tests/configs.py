"""Training configs shared by several test modules (test modules never import
each other)."""

from grokspec.lab.config import TrainConfig

#: A run that trains in about a second on one CPU core: (a+b) mod 11, d_model 32.
TINY = TrainConfig(
    p=11,
    train_fraction=0.5,
    d_model=32,
    n_heads=2,
    d_ff=64,
    batch_size=0,
    steps=200,
    eval_every=20,
    checkpoint_every=50,
    probe_size=60,
    device="cpu",
)
