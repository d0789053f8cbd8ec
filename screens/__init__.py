"""Textual screens and widgets of the TUI. They reach the controller only through ``self.app.client``."""
