"""Model knowledge: GGUF header reading and the local model store. No UI, no processes."""
