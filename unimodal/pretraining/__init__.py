"""Pretraining of the unified model with DeepSpeed: config, trainer, EMA, FLOPs."""
