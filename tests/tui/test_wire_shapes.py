"""The JSON of a fit on the control API: ``wire.FitEstimate`` and ``wire.FitOption`` are derived from the estimator's
dataclasses (``catalog.estimate.Estimate``, ``catalog.recommend.Option``), not restated. Pinned key by key, so a
renamed or dropped field is a deliberate change of the wire, and checked against what the estimator really writes."""

from __future__ import annotations

import dataclasses
import json
from typing import get_type_hints

from shape_check import problems

from llmctl.app.client import wire
from llmctl.catalog.estimate import Budget, Estimate, FitRequest, estimate
from llmctl.catalog.known import facts_for, find_model
from llmctl.catalog.recommend import Option, recommend

GiB = 1 << 30

ESTIMATE = {
    "weights_bytes": int, "repack_bytes": int, "kv_cache_bytes": int, "compute_bytes": int, "output_bytes": int,
    "overhead_bytes": int, "total_bytes": int, "gpu_bytes": int, "cpu_bytes": int, "gpu_layers": int,
    "n_layers": int, "kv_cells": int, "fits": str, "reason": str, "runtime": str, "notes": list[str], "memory": str,
    "headroom_bytes": int,
}
OPTION = {
    "model": str, "quant": str, "ctx": int, "runtime": str, "fits": str, "gpu_layers": int, "n_layers": int,
    "total_bytes": int, "gpu_bytes": int, "cpu_bytes": int, "headroom_bytes": int, "tokens_per_s": float,
    "score": float, "license": str, "why": list[str], "ref": str, "estimate": wire.FitEstimate,
}


def test_the_wire_keys_and_types_are_pinned() -> None:
    assert get_type_hints(wire.FitEstimate) == ESTIMATE and list(get_type_hints(wire.FitEstimate)) == list(ESTIMATE)
    assert get_type_hints(wire.FitOption) == OPTION and list(get_type_hints(wire.FitOption)) == list(OPTION)
    assert wire.FitEstimate.__required_keys__ == set(ESTIMATE) and wire.FitOption.__required_keys__ == set(OPTION)


def test_they_follow_the_dataclasses_field_for_field() -> None:
    assert [f.name for f in dataclasses.fields(Estimate)] == list(get_type_hints(wire.FitEstimate))
    assert [f.name for f in dataclasses.fields(Option)] == list(get_type_hints(wire.FitOption))[:-2]


def test_what_the_estimator_writes_conforms_through_json() -> None:
    budget = Budget((8 * GiB,), 32 * GiB)
    options, _left_out = recommend(budget, ctx=4096, gpu_bandwidth_gbs=500.0)
    assert options
    for o in options[:3]:
        model, _ = find_model(o.model)
        est = estimate(facts_for(model, o.quant), FitRequest(ctx=o.ctx), budget)
        sent = json.loads(json.dumps({**o.to_json(), "ref": f"{o.model}:{o.quant}", "estimate": est.to_json()}))
        assert problems(sent, wire.FitOption) == []
    broken = {**sent, "estimate": {k: v for k, v in sent["estimate"].items() if k != "kv_cells"}}
    assert problems(broken, wire.FitOption) == ["$.estimate.kv_cells: missing"]
