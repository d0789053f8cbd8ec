"""llmctl: a local LLM manager (the package root; subpackages live in the repo's top-level folders)."""

__version__ = "0.1.0"
