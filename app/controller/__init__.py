"""The controller daemon: OpenAI gateway, control API, metrics; it composes catalog and runtimes."""
