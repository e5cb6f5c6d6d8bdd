"""Training: one run lifecycle (Run, RunDir), the caption-LM trainer, checkpoints,
metrics and summaries, the caption bank, and training on class names."""
