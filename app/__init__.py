"""Composition: settings, the controller (gateway + control API), its client and the CLI."""
