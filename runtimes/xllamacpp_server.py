"""``python -m llmctl.runtimes.xllamacpp_server [llama-server flags]``: llama.cpp's own HTTP server from the
prebuilt ``xllamacpp`` wheel, as a process of its own.

It takes the long flags ``llama-server`` takes (the subset llmctl uses), so one argv builder serves both engines,
maps them onto ``xllamacpp.CommonParams`` and starts ``xllamacpp.Server``, which loads the model and listens on
its own threads; this process then blocks until SIGTERM/SIGINT/SIGHUP and exits. There is no child process, so
stopping this one (or its process group) leaves nothing behind. The API key comes from ``LLAMA_API_KEY``, as
with ``llama-server``. Every default that would change the launch behind the caller's back is set explicitly
(``fit_params``, GPU layers, prompt cache, flash attention); load lines are printed (verbosity 4) so the log
shows llama.cpp's buffer sizes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

_FLASH = {"auto": "LLAMA_FLASH_ATTN_TYPE_AUTO", "on": "LLAMA_FLASH_ATTN_TYPE_ENABLED",
          "off": "LLAMA_FLASH_ATTN_TYPE_DISABLED"}
_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xllamacpp_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--alias", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ctx-size", type=int, default=4096)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--threads", type=int, default=-1)
    p.add_argument("--threads-batch", type=int, default=-1)
    p.add_argument("--n-gpu-layers", type=int, default=0)
    p.add_argument("--cache-type-k", choices=_CACHE_TYPES, default="f16")
    p.add_argument("--cache-type-v", choices=_CACHE_TYPES, default="f16")
    p.add_argument("--flash-attn", choices=tuple(_FLASH), default="auto")
    p.add_argument("--fit", choices=("on", "off"), default="off")
    p.add_argument("--cache-ram", type=int, default=None)
    p.add_argument("--chat-template", default=None)
    p.add_argument("--model-draft", default=None)
    p.add_argument("--n-gpu-layers-draft", type=int, default=0)
    p.add_argument("--mmproj", default=None)
    p.add_argument("--embeddings", action="store_true")
    p.add_argument("--pooling", choices=("none", "mean", "cls", "last", "rank"), default=None)
    p.add_argument("--metrics", action="store_true")
    p.add_argument("--jinja", action="store_true")
    p.add_argument("--no-webui", action="store_true")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--verbosity", type=int, default=4)
    return p


def build_params(args: argparse.Namespace, api_key: str | None):
    """The ``CommonParams`` for parsed flags (imports xllamacpp: only in the server process)."""
    import xllamacpp as x

    p = x.CommonParams()
    p.model.path = args.model
    if args.alias:
        p.model_alias = {args.alias}
    p.hostnames = [args.host]
    p.port = args.port
    p.n_ctx = args.ctx_size
    p.n_parallel = args.parallel
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads_batch if args.threads_batch > 0 else args.threads
    p.n_gpu_layers = args.n_gpu_layers
    p.cache_type_k = getattr(x.ggml_type, f"GGML_TYPE_{args.cache_type_k.upper()}")
    p.cache_type_v = getattr(x.ggml_type, f"GGML_TYPE_{args.cache_type_v.upper()}")
    p.flash_attn_type = getattr(x.llama_flash_attn_type, _FLASH[args.flash_attn])
    p.fit_params = args.fit == "on"
    if args.cache_ram is not None:
        p.cache_ram_mib = args.cache_ram
    if args.chat_template:
        p.chat_template = args.chat_template
    p.use_jinja = args.jinja
    p.ui = not args.no_webui
    p.endpoint_metrics = args.metrics
    p.embedding = args.embeddings
    if args.pooling:
        p.pooling_type = getattr(x.llama_pooling_type, f"LLAMA_POOLING_TYPE_{args.pooling.upper()}")
    p.warmup = not args.no_warmup
    p.verbosity = args.verbosity
    if args.mmproj:
        p.mmproj.path = args.mmproj
    if args.model_draft:
        spec = p.speculative
        spec.draft.mparams.path = args.model_draft
        spec.draft.n_gpu_layers = args.n_gpu_layers_draft
        spec.draft.cpuparams.n_threads = args.threads
        spec.draft.cpuparams_batch.n_threads = args.threads
        spec.types = [x.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
        p.speculative = spec
    if api_key:
        p.api_keys = [api_key]
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stop = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    # block the stop signals before the server's threads exist, so they inherit the mask and sigwait() below
    # is the one place that receives them
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    import xllamacpp as x

    try:
        server = x.Server(build_params(args, os.environ.get("LLAMA_API_KEY") or None))
    except Exception as exc:  # the extension raises plain RuntimeError/ValueError: say it in llama.cpp's words
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"llmctl: xllamacpp {getattr(x, '__version__', '?')} serving {args.alias or args.model} at "
          f"{server.listening_address}", flush=True)
    signal.sigwait(stop)
    # the server's threads are still serving: leave at once, the way llama-server does on SIGTERM
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
