"""Client protocols the gateway speaks besides OpenAI's chat/completions/embeddings: the Ollama API (translated
to the OpenAI routes and back, through the gateway's one forwarding path), an engine's own routes (``/tokenize``,
``/props``, ``/v1/rerank``, …) routed by model, and what every route shares (request ids, the unknown-route error,
the fan-out of ``n`` and prompt lists); OpenAI Responses and Anthropic Messages (``responses``, ``messages``, served by
``routes``), each translated to a chat completion on the same path and its answer reshaped back (``stream``)."""
