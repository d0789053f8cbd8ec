"""``python -m llmctl.runtimes.xllamacpp_server [llama-server flags]``: llama.cpp's own HTTP server from the
prebuilt ``xllamacpp`` wheel, as a process of its own.

It takes ``llama-server``'s flags (every one the wheel has a field for: ``runtimes.llama_flags``), so one argv
builder serves both engines, maps them onto ``xllamacpp.CommonParams`` and starts ``xllamacpp.Server``, which
loads the model and listens on its own threads; this process then blocks until SIGTERM/SIGINT/SIGHUP and exits.
There is no child process, so stopping this one (or its process group) leaves nothing behind. The API key comes
from ``LLAMA_API_KEY``, as with ``llama-server``. Every default that would change the launch behind the caller's
back is set explicitly (``llama_flags.DEFAULTS``: no fitting of its own, GPU layers, verbosity 4, so the log
shows llama.cpp's buffer sizes).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmctl.catalog.errors import ConfigError
from llmctl.runtimes.llama_flags import DEFAULTS, FileText, Grammar, Lora, Member, Prefix, parse


def _value(x: Any, current: Any, value: Any) -> Any:
    """A parsed value as the wheel's own object."""
    if isinstance(value, Member):
        return getattr(getattr(x, value.cls), value.name)
    if isinstance(value, list) and value and isinstance(value[0], Member):
        return [_value(x, None, v) for v in value]
    if isinstance(value, list) and value and isinstance(value[0], Lora):
        adapters = list(current)
        for lora in value:
            info = x.CommonAdapterLoraInfo()
            info.path, info.scale = lora.path, lora.scale
            adapters.append(info)
        return adapters
    if isinstance(value, Prefix):
        return list(value.values) + list(current)[len(value.values):]
    if isinstance(value, FileText):
        try:
            text = Path(value.path).expanduser().read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {value.path}", exc.strerror or str(exc)) from None
        return _value(x, current, Grammar(text)) if isinstance(current, x.CommonGrammar) else text
    if isinstance(value, Grammar):
        grammar = x.CommonGrammar()
        grammar.grammar = x.json_schema_to_grammar(value.text) if value.schema else value.text
        grammar.type = x.common_grammar_type.COMMON_GRAMMAR_TYPE_USER
        return grammar
    return value


def _assign(x: Any, obj: Any, path: list[str], value: Any) -> None:
    """Set ``obj.a.b.c`` (the wheel's nested parameters are views into the one C++ struct: tests/unit/
    test_llama_flags.py reads every nested field back)."""
    for head in path[:-1]:
        obj = getattr(obj, head)
    setattr(obj, path[-1], _value(x, getattr(obj, path[-1]), value))


def build_params(argv: Sequence[str], api_key: str | None):
    """The ``CommonParams`` for a llama-server argv (imports xllamacpp: only in the server process)."""
    import xllamacpp as x

    p = x.CommonParams()
    given = parse(argv)
    for field, value in parse(DEFAULTS) + given:
        _assign(x, p, field.split("."), value)
    named = {field for field, _ in given}
    if "cpuparams_batch.n_threads" not in named:
        p.cpuparams_batch.n_threads = p.cpuparams.n_threads
    spec = p.speculative
    if spec.draft.mparams.path:  # a draft model: llama-server's draft defaults, unless given
        if "speculative.types" not in named:
            spec.types = [x.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
        for batch in ("", "_batch"):
            if f"speculative.draft.cpuparams{batch}.n_threads" not in named:
                getattr(spec.draft, f"cpuparams{batch}").n_threads = p.cpuparams.n_threads
    if api_key:
        p.api_keys = [api_key]
    return p


def _alias(argv: Sequence[str]) -> str | None:
    """The name the model is served under: its alias, else its file."""
    for names in (("--alias", "-a"), ("--model", "-m")):
        found = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in names]
        if found:
            return found[-1]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stop = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    # block the stop signals before the server's threads exist, so they inherit the mask and sigwait() below
    # is the one place that receives them
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    import xllamacpp as x

    try:
        params = build_params(argv, os.environ.get("LLAMA_API_KEY") or None)
    except ConfigError as exc:  # llmctl refuses these before a launch; a hand-run wrapper says it the same way
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        server = x.Server(params)
    except Exception as exc:  # the extension raises plain RuntimeError/ValueError: say it in llama.cpp's words
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"llmctl: xllamacpp {getattr(x, '__version__', '?')} serving {_alias(argv)} at "
          f"{server.listening_address}", flush=True)
    signal.sigwait(stop)
    # the server's threads are still serving: leave at once, the way llama-server does on SIGTERM
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
