"""Process groups, CPU compatibility and distributed start-up around megatron-core."""
