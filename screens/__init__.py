"""Textual screens and widgets (the TUI lands with the TUI issue)."""
