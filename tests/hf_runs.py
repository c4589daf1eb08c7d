"""A tiny Hugging Face Trainer run, shared by the test modules that write its
output folder (test modules never import each other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class Pairs(torch.utils.data.Dataset):
    """16 token sequences with a binary label, the same on every call."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, 50, (8,), generator=g), "labels": torch.tensor(i % 2)}


def tiny_bert_trainer(out: Path, *, max_steps: int, layers: int) -> Any:
    """A Trainer of a 32-wide BERT classifier on CPU, saving and evaluating every 2 steps into `out`."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16,
    )  # fmt: skip
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, save_steps=2, eval_strategy="steps", eval_steps=2, logging_steps=1,
        per_device_train_batch_size=4, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    return transformers.Trainer(model=model, args=args, train_dataset=Pairs(), eval_dataset=Pairs())
