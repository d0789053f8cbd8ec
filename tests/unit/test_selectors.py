"""Pull selectors: exact quants, every shard, projectors kept apart, clear choices when ambiguous."""

from __future__ import annotations

import pytest

from llmctl.catalog.selectors import GgufChoice, SelectionError, choose_gguf, quant_of

REPO = "org/m-GGUF"


@pytest.mark.parametrize(("name", "quant"), [
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
    ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
    ("llama-2-7b.Q4_K.gguf", "Q4_K"),
    ("gemma-3-4b-it-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
    ("Qwen3-30B-A3B-IQ4_XS.gguf", "IQ4_XS"),
    ("Q8_0/m-Q8_0-00002-of-00003.gguf", "Q8_0"),
    ("phi-4-BF16.gguf", "BF16"),
    ("mmproj-model-f16.gguf", "F16"),
    ("qwen2-7b.gguf", None),
])
def test_the_quant_token_of_a_file_name(name: str, quant: str | None) -> None:
    assert quant_of(name) == quant


def test_a_quant_matches_exactly_not_by_prefix() -> None:
    names = ["m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-Q4_K.gguf", "README.md"]
    assert choose_gguf(names, REPO, quant="q4_k") == GgufChoice(("m-Q4_K.gguf",))
    assert choose_gguf(names, REPO, quant="Q4_K_M").files == ("m-Q4_K_M.gguf",)


def test_a_prefix_that_is_no_quant_lists_the_choices() -> None:
    with pytest.raises(SelectionError) as err:
        choose_gguf(["m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-Q8_0.gguf"], REPO, quant="Q4_K")
    assert err.value.title == "org/m-GGUF has no Q4_K model file"
    assert "org/m-GGUF:Q4_K_M or org/m-GGUF:Q4_K_S" in err.value.message and "Q8_0" in err.value.message


def test_a_projector_is_never_the_model_and_comes_along_as_the_projector() -> None:
    names = ["mmproj-F16.gguf", "mmproj-F32.gguf", "model-F16.gguf", "model-Q4_K_M.gguf"]
    assert choose_gguf(names, REPO, quant="F16") == GgufChoice(("model-F16.gguf",), "mmproj-F16.gguf")
    assert choose_gguf(names, REPO, quant="Q4_K_M") == GgufChoice(("model-Q4_K_M.gguf",), "mmproj-F16.gguf")
    with pytest.raises(SelectionError, match="is a multimodal projector"):
        choose_gguf(names, REPO, file="mmproj-F16.gguf")


def test_only_projectors_is_no_model() -> None:
    with pytest.raises(SelectionError, match="has no F16 model file"):
        choose_gguf(["mmproj-F16.gguf"], REPO, quant="F16")


def test_two_models_of_one_quant_are_ambiguous() -> None:
    names = ["a-Q8_0.gguf", "b-Q8_0-00001-of-00002.gguf", "b-Q8_0-00002-of-00002.gguf"]
    with pytest.raises(SelectionError) as err:
        choose_gguf(names, REPO, quant="Q8_0")
    assert err.value.title == "org/m-GGUF has 2 Q8_0 models"
    assert "a-Q8_0.gguf, b-Q8_0-00001-of-00002.gguf" in err.value.message and ":FILE.gguf" in err.value.message
    assert choose_gguf(names, REPO, file="b-Q8_0-00001-of-00002.gguf").files == (
        "b-Q8_0-00001-of-00002.gguf", "b-Q8_0-00002-of-00002.gguf")


def test_a_split_model_comes_whole_or_not_at_all() -> None:
    parts = [f"Q4_K_M/m-Q4_K_M-0000{i}-of-00003.gguf" for i in (3, 1, 2)]
    assert choose_gguf(parts, REPO, quant="Q4_K_M").files == tuple(sorted(parts))
    with pytest.raises(SelectionError, match=r"lacks part\(s\) 2"):
        choose_gguf([parts[0], parts[1]], REPO, quant="Q4_K_M")


def test_an_unknown_file_lists_the_ggufs() -> None:
    with pytest.raises(SelectionError) as err:
        choose_gguf(["m-Q8_0.gguf"], REPO, file="m-Q4_0.gguf")
    assert "m-Q8_0.gguf" in err.value.message
