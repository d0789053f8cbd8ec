"""Kubernetes and Compose export: from a catalog model and a GPU to a vLLM deployment plan (``plan.py``) and the
manifests that run it (``manifests.py``, written by the small YAML emitter in ``yaml_emit.py``). Imports only
catalog; nothing here runs anything."""
