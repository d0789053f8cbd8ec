"""Model knowledge: GGUF and safetensors headers, the local model store, the bundled catalog and GPU table, the
memory estimator and recommender, model references and Hub downloads. No UI, no processes."""
