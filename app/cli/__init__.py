"""The command line: the click group (``root.py``) and one module per command family. Heavy modules (aiohttp,
httpx, rich, textual) are imported inside command bodies so ``llmctl --help`` stays fast."""


def main() -> None:
    """The console script's entry point (``llmctl = llmctl.app.cli:main`` in pyproject)."""
    from llmctl.app.cli.root import main as run

    run()
