"""Checkpoints: model weights via megatron dist_checkpointing, plus the training state around them."""
