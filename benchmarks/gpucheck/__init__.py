"""The pieces of benchmarks/gpu_check.py: the GPU and its build (gpu), random-weight GGUFs of real shapes (models),
llmctl run as a user runs it (cli), and the report (report)."""
