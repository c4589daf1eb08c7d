"""The grokking lab: tasks, seed-batched models, training configs, the
training loop and grokspec run directories (SPEC §4). Needs torch."""
