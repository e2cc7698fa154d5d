"""Megatron checkpoints <-> Hugging Face transformers models and tokenizers."""
