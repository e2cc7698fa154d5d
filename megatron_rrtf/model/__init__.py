"""The megatron-core GPT model with MQA in two families, and its attention backends."""
