"""llama-server's flags on the default engine: the table maps each onto xllamacpp's CommonParams (pure, exact), the
wrapper applies it to the real wheel's parameters, and a flag the wheel cannot express is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.catalog.errors import ConfigError
from llmctl.runtimes.base import ChecksArgs, Deployment, DeploymentRefused
from llmctl.runtimes.llama_cpp import XLlamaCpp
from llmctl.runtimes.llama_flags import FLAGS, FileText, Grammar, Lora, Member, Prefix, check_user_args, parse


def test_flags_parse_to_exact_field_assignments() -> None:
    assert parse(["--reranking", "-c", "8192", "--top-k", "20", "--temp=0.3", "--lora", "a.gguf,b.gguf",
                  "--lora-scaled", "c.gguf:0.5", "--chat-template-file", "/t.jinja", "-ts", "3,1", "--no-mmap",
                  "--json-schema", "{}", "--spec-type", "ngram-mod", "--chat-template-kwargs",
                  '{"enable_thinking": false}', "-ngl", "auto", "-to", "30", "-fa", "on"]) == [
        ("embedding", True), ("pooling_type", Member("llama_pooling_type", "LLAMA_POOLING_TYPE_RANK")),
        ("n_ctx", 8192),
        ("sampling.top_k", 20),
        ("sampling.temp", 0.3),
        ("lora_adapters", [Lora("a.gguf"), Lora("b.gguf")]),
        ("lora_adapters", [Lora("c.gguf", 0.5)]),
        ("chat_template", FileText("/t.jinja")),
        ("tensor_split", Prefix((3.0, 1.0))),
        ("load_mode", Member("llama_load_mode", "LLAMA_LOAD_MODE_NONE")),
        ("sampling.grammar", Grammar("{}", schema=True)),
        ("speculative.types", [Member("common_speculative_type", "COMMON_SPECULATIVE_TYPE_NGRAM_MOD")]),
        ("default_template_kwargs", {"enable_thinking": "false"}),
        ("n_gpu_layers", -1),
        ("timeout_read", 30), ("timeout_write", 30),
        ("flash_attn_type", Member("llama_flash_attn_type", "LLAMA_FLASH_ATTN_TYPE_ENABLED")),
    ]


@pytest.mark.parametrize(("args", "says"), [
    (["--control-vector", "cv.gguf"], "llama.cpp flag --control-vector cannot be given to the default engine"),
    (["--top-kk", "20"], "(did you mean --top-k"),
    (["--port", "9"], "llama.cpp flag --port cannot be set in a model's args"),
    (["--api-key", "x"], "cannot be set in a model's args"),
    (["--top-k", "many"], "llama.cpp flag --top-k does not take 'many'"),
    (["--pooling", "max"], "it takes one of none, mean, cls, last, rank"),
    (["--reranking=yes"], "llama.cpp flag --reranking takes no value"),
    (["--top-k"], "llama.cpp flag --top-k needs a value"),
    (["20"], "'20' is not a llama.cpp flag"),
])
def test_a_flag_the_wheel_cannot_take_is_refused_by_name(args: list[str], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_user_args(args)
    assert says in str(err.value)


def test_the_engine_checks_args_when_written_and_before_a_launch() -> None:
    engine = XLlamaCpp("py")
    assert isinstance(engine, ChecksArgs)
    engine.check_args(["--reranking", "--top-k", "20"])
    with pytest.raises(ConfigError, match="--lora-base"):
        engine.check_args(["--lora-base", "x.gguf"])
    engine.preflight(Deployment("m", Path("/m.gguf"), 1, extra_args=("--top-k", "20")))
    with pytest.raises(DeploymentRefused, match=r"\[models.m\] args: llama.cpp flag --lora-base cannot be given"):
        engine.preflight(Deployment("m", Path("/m.gguf"), 1, extra_args=("--lora-base", "x.gguf")))


def test_every_field_in_the_table_is_one_the_wheel_has() -> None:
    x = pytest.importorskip("xllamacpp")
    p = x.CommonParams()
    for flag in FLAGS:
        for path in flag.fields:
            obj = p
            for part in path.split("."):
                assert hasattr(obj, part), f"{flag.names[-1]}: CommonParams has no {path}"
                obj = getattr(obj, part)


def test_the_wrapper_applies_the_flags_to_the_wheels_parameters(tmp_path: Path) -> None:
    x = pytest.importorskip("xllamacpp")
    from llmctl.runtimes.xllamacpp_server import build_params

    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    grammar = tmp_path / "g.gbnf"
    grammar.write_text('root ::= "yes"')
    p = build_params(["--model", "/m.gguf", "--port", "1", "--threads", "3", "--reranking", "--top-k", "20",
                      "--lora", "a.gguf", "--lora-scaled", "b.gguf:0.5", "--chat-template-file", str(template),
                      "--grammar-file", str(grammar), "-ts", "3,1", "--no-mmap", "-md", "/d.gguf",
                      "--spec-type", "ngram-mod", "--ctx-size", "1024"], None)
    assert (p.embedding, p.pooling_type) == (True, x.llama_pooling_type.LLAMA_POOLING_TYPE_RANK)
    assert p.sampling.top_k == 20 and p.n_ctx == 1024  # a later flag wins over the wrapper's default 4096
    assert [(a.path, a.scale) for a in p.lora_adapters] == [("a.gguf", 1.0), ("b.gguf", 0.5)]
    assert p.chat_template == "{{ messages }}"
    assert p.sampling.grammar.grammar == 'root ::= "yes"'
    assert p.tensor_split[:3] == [3.0, 1.0, 0.0]
    assert p.load_mode == x.llama_load_mode.LLAMA_LOAD_MODE_NONE
    assert p.speculative.draft.mparams.path == "/d.gguf"
    assert p.speculative.types == [x.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_MOD]  # given: kept
    assert (p.cpuparams_batch.n_threads, p.speculative.draft.cpuparams.n_threads) == (3, 3)
    assert (p.fit_params, p.n_gpu_layers, p.verbosity) == (False, 0, 4)  # the wrapper's defaults
    with pytest.raises(ConfigError, match="cannot read"):
        build_params(["--chat-template-file", str(tmp_path / "missing.jinja")], None)
