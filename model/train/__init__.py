"""Training: data, loss, LoRA trainer, evaluation (docs/training.md)."""
