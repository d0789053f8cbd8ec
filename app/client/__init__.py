"""The controller's client: the typed client of the control API (``api.py``), the JSON shapes it returns
(``wire.py``) and starting a background controller (``background.py``). Used by the CLI and the TUI."""
