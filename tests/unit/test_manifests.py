"""vLLM deployment manifests: the memory plan, the YAML emitter, and offline schema validation (Kubernetes schemas
from kubernetes-validate, the Compose specification's JSON schema as check-jsonschema vendors it)."""

from __future__ import annotations

import json
import re
from importlib import resources

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.estimate import VLLM_PROFILE, Budget, FitRequest, estimate_vllm
from llmctl.catalog.known import facts_for_safetensors, find_model
from llmctl.deploy.manifests import compose_manifest, k8s_manifest, slug
from llmctl.deploy.plan import DeployRequest, GiB, plan_vllm
from llmctl.deploy.yaml_emit import Note, emit, plain

K8S_VERSION = "1.33"
LWS = "leaderworkerset.x-k8s.io/v1"


def k8s_valid(doc: dict) -> list[str]:
    """Validate one document strictly (unknown fields are errors); a LeaderWorkerSet is a CRD with no schema in
    kubernetes-validate, so its pod templates are validated as core PodTemplates. Returns what was checked."""
    if doc["apiVersion"] == LWS:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # the limitation, pinned
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked = []
        for role in ("leaderTemplate", "workerTemplate"):
            template = doc["spec"]["leaderWorkerTemplate"][role]
            wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role.lower()},
                       "template": template}
            kubernetes_validate.validate(wrapper, K8S_VERSION, strict=True)
            checked.append(f"PodTemplate/{role}")
        return checked
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    return [doc["kind"]]


def compose_schema() -> dict:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text("utf-8"))


def compose_valid(doc: dict) -> None:
    schema = compose_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(doc)


def plan(name: str, gpu: str, vram_gib: float, **kw):
    model, _ = find_model(name)
    return plan_vllm(model, DeployRequest(name=model.name, gpu_name=gpu, vram_bytes=int(vram_gib * GiB), **kw))


SEVEN_B = dict(name="qwen2.5-7b-instruct", gpu="RTX 4090", vram_gib=24)
SEVENTY_B = dict(name="llama-3.3-70b-instruct", gpu="A100 80GB", vram_gib=80, variant="bf16", tensor_parallel=4)


# the plan -----------------------------------------------------------------------------------------------------
def test_7b_awq_on_one_24gib_gpu() -> None:
    p = plan(**SEVEN_B)
    assert (p.variant, p.repo, p.quantization) == ("awq", "Qwen/Qwen2.5-7B-Instruct-AWQ", "awq_marlin")
    assert p.reserve_bytes == int(24 * GiB * 0.9)
    assert p.kv_bytes_per_token == 28 * 2 * 4 * 128 * 2  # layers × (K, V) × KV heads × head dim × fp16
    assert p.max_model_len == 32768 and p.kv_tokens > 32768
    assert p.gpus_per_pod == 1 and p.shm_bytes == GiB and p.estimate.fits == "yes"


def test_tp1_plan_is_the_estimators_own_figure() -> None:
    """With one GPU the plan's KV room is exactly what `llmctl fit --runtime vllm` works from."""
    p = plan(**SEVEN_B)
    model, _ = find_model("qwen2.5-7b-instruct")
    est = estimate_vllm(facts_for_safetensors(model, "awq"), FitRequest(ctx=32768, profile=VLLM_PROFILE),
                        Budget((24 * GiB,)))
    assert f"{p.kv_tokens:,} tokens" in est.reason


def test_70b_bf16_tp4_on_80gib() -> None:
    p = plan(**SEVENTY_B)
    assert p.quantization is None and p.repo == "meta-llama/Llama-3.3-70B-Instruct"
    assert p.shard.weights_bytes == -(-int(70.6e9 * 2) // 4)
    assert p.shard.n_head_kv == 2 and p.kv_bytes_per_token == 80 * 2 * 2 * 128 * 2
    assert p.max_model_len == 131072 and p.gpus_per_pod == 4
    assert p.shm_bytes == 2 * GiB  # 512 MiB + 4 × 3 pairs × 128 MiB = 2 GiB


def test_what_does_not_fit_says_why() -> None:
    with pytest.raises(LlmctlError, match="does not fit on one RTX 4090"):
        plan(name="llama-3.3-70b-instruct", gpu="RTX 4090", vram_gib=24, variant="bf16")
    with pytest.raises(LlmctlError, match="does not divide the model's 64 attention heads"):
        plan(**{**SEVENTY_B, "tensor_parallel": 3})
    with pytest.raises(LlmctlError, match="no GPTQ checkpoint"):
        plan(**{**SEVENTY_B, "variant": "gptq"})


def test_a_short_kv_cache_cuts_max_model_len() -> None:
    p = plan(name="qwen2.5-32b-instruct", gpu="RTX 4090", vram_gib=24)  # AWQ 17 GB on 21.6 GiB
    assert p.max_model_len < 32768 and p.max_model_len % 1024 == 0 and p.kv_tokens >= p.max_model_len
    assert any("cut to" in n for n in p.notes)


# Kubernetes ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [SEVEN_B, SEVENTY_B, {**SEVENTY_B, "pipeline_parallel": 2, "replicas": 2}],
                         ids=["7b", "70b-tp4", "70b-tp4-pp2"])
def test_every_kubernetes_document_passes_the_schemas(case) -> None:
    m = k8s_manifest(plan(**case), "llmctl deploy export")
    assert list(yaml.safe_load_all(m.text)) == list(m.docs)  # the text is the data
    checked = [c for doc in m.docs for c in k8s_valid(doc)]
    kinds = [d["kind"] for d in m.docs]
    if case.get("pipeline_parallel", 1) > 1:
        assert kinds == ["PersistentVolumeClaim", "LeaderWorkerSet", "Service", "HorizontalPodAutoscaler"]
        assert "PodTemplate/workerTemplate" in checked
    else:
        assert kinds == ["PersistentVolumeClaim", "Deployment", "Service", "HorizontalPodAutoscaler"]
    for doc in m.docs:
        assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", doc["metadata"]["name"])  # DNS-1035


def _pod(m) -> dict:
    doc = next(d for d in m.docs if d["kind"] in ("Deployment", "LeaderWorkerSet"))
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"]
    return doc["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]


def test_gpus_secrets_shm_and_probes() -> None:
    m = k8s_manifest(plan(**SEVENTY_B), "x")
    pod = _pod(m)
    c = pod["containers"][0]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == 4
    args = c["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--max-model-len") + 1] == "131072" and "--quantization" not in args
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": f"{slug('llama-3.3-70b-instruct')}-secrets",
                                                                "key": "api-key"}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not any(d["kind"] == "Secret" for d in m.docs)  # never a key in a file
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert {c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {"/health"}
    assert c["startupProbe"]["failureThreshold"] * 10 >= 1800  # 141 GB to download first
    hpa = m.docs[-1]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm:num_requests_waiting"
    assert "NOT verified on a cluster" in m.text


def test_multi_node_asks_tp_gpus_per_node() -> None:
    m = k8s_manifest(plan(**{**SEVENTY_B, "pipeline_parallel": 2}), "x")
    lws = m.docs[1]
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    for role in ("leaderTemplate", "workerTemplate"):
        res = lws["spec"]["leaderWorkerTemplate"][role]["spec"]["containers"][0]["resources"]
        assert res["limits"]["nvidia.com/gpu"] == 4
    script = _pod(m)["containers"][0]["command"][2]
    assert "--pipeline-parallel-size 2" in script and "--tensor-parallel-size 4" in script
    assert m.docs[-1]["spec"]["scaleTargetRef"]["kind"] == "LeaderWorkerSet"


def test_a_broken_kubernetes_manifest_is_rejected() -> None:
    """The validation is real: wrong types and unknown fields fail."""
    doc = next(d for d in k8s_manifest(plan(**SEVEN_B), "x").docs if d["kind"] == "Deployment")
    bad = json.loads(json.dumps(doc))
    bad["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = json.loads(json.dumps(doc))
    bad["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = json.loads(json.dumps(doc))
    del bad["spec"]["template"]["spec"]["containers"][0]["name"]  # required
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


# Compose ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [SEVEN_B, SEVENTY_B], ids=["7b", "70b-tp4"])
def test_compose_passes_the_compose_specification(case) -> None:
    files = compose_manifest(plan(**case), "x")
    doc = files[0].docs[0]
    assert yaml.safe_load(files[0].text) == doc
    compose_valid(doc)
    svc = doc["services"]["vllm"]
    device = svc["deploy"]["resources"]["reservations"]["devices"][0]
    assert device == {"driver": "nvidia", "count": case.get("tensor_parallel", 1), "capabilities": ["gpu"]}
    assert svc["env_file"] == ["vllm.env"]
    assert all(line.startswith("#") for line in files[1].text.splitlines())  # instructions, never a value


def test_a_broken_compose_file_is_rejected() -> None:
    doc = compose_manifest(plan(**SEVEN_B), "x")[0].docs[0]
    for breakage in ({"shm_size": ["2gb"]}, {"healthcheck": {"test": 5}}, {"not_a_key": 1},
                     {"deploy": {"resources": {"reservations": {"devices": "nvidia"}}}}):
        bad = json.loads(json.dumps(doc))
        bad["services"]["vllm"].update(breakage)
        with pytest.raises(jsonschema.ValidationError):
            compose_valid(bad)


# the emitter --------------------------------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=30),
                     st.sampled_from(["yes", "No", "on", "null", "~", "1.5", "0x1f", "--model", "a: b", "- x",
                                      "#x", "x #y", "'q'", "\"d\"", "line\nnext\n", "a\n\nb", " lead\nx", "é😀"]))
_values = st.recursive(_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4),
    st.dictionaries(st.text(min_size=1, max_size=12), kids, max_size=4),
    st.builds(Note, kids, st.text(max_size=60))), max_leaves=20)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), _values, max_size=5), st.text(max_size=80))
def test_emit_round_trips(doc, header) -> None:
    text = emit(doc, header)
    assert yaml.safe_load(text) == (plain(doc) or None)
