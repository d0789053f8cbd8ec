"""The application: the CLI (``cli/``), the TUI shell (``tui.py``), the controller (``controller/``), its client
(``client/``), benchmarks (``bench/``), and at this level the composition they share (settings, paths, launch plans,
fit inputs, Ollama and remotes as sources). ARCHITECTURE.md draws the map."""
