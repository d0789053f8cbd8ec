"""The GPU probes against outputs of the vendors' tools, written in those tools' exact formats as fixtures
(tests/fixtures/hw/, see its README: none of these machines is here), and unified memory counted once."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from llmctl.app.fit_inputs import machine_budget
from llmctl.catalog.estimate import Budget, FitRequest, estimate
from llmctl.catalog.known import facts_for, find_gpu, find_model
from llmctl.catalog.recommend import recommend
from llmctl.runtimes.hardware import AllProbes, AmdProbe, IntelProbe, probe, probes_for
from llmctl.runtimes.hardware.amd import parse_amd_smi, parse_rocm_smi
from llmctl.runtimes.hardware.apple import working_set_limit
from llmctl.runtimes.hardware.base import Host, as_int, parse_json
from llmctl.runtimes.hardware.intel import parse_vulkaninfo_summary
from llmctl.runtimes.hardware.recorded import recorded_host
from llmctl.runtimes.ledger import UNIFIED, device_bytes

GiB, MiB = 1 << 30, 1 << 20
HW = Path(__file__).parent.parent / "fixtures" / "hw"


def recorded(name: str, tmp_path: Path):
    return probe(tmp_path, host=recorded_host(HW / name))


def test_m2_pro_32gb_is_one_pool_with_a_two_thirds_gpu_limit(tmp_path: Path) -> None:
    r = recorded("macbook-pro-m2-pro-32gb", tmp_path)
    assert r.memory == "unified" and r.ram_total == 32 * GiB
    assert r.ram_available == (903412 + 497113) * 16384  # vm_stat: free + inactive pages
    assert (r.cpu.model, r.cpu.performance_cores, r.cpu.efficiency_cores) == ("Apple M2 Pro", 8, 4)
    assert r.cpu.flags == ("neon", "asimddp", "i8mm")
    [g] = r.gpus
    assert (g.name, g.cores, g.backends, g.vendor, g.unified) == ("Apple M2 Pro", 19, ("Metal",), "apple", True)
    assert g.vram_total // MiB == 21845  # recommendedMaxWorkingSetSize: 2/3 of 32 GiB
    assert g.vram_free <= r.ram_available  # the GPU's free share is part of the pool, never more
    assert "sudo sysctl iogpu.wired_limit_mb=" in g.note and "never changes it" in g.note


def test_m3_max_64gb_gets_three_quarters(tmp_path: Path) -> None:
    r = recorded("macbook-pro-m3-max-64gb", tmp_path)
    [g] = r.gpus
    assert (g.name, g.cores, r.ram_total) == ("Apple M3 Max", 40, 64 * GiB)
    assert g.vram_total == 48 * GiB


def test_working_set_limit_follows_the_wired_limit_sysctl() -> None:
    assert working_set_limit(16 * GiB)[0] == 16 * GiB * 2 // 3
    assert working_set_limit(128 * GiB)[0] == 96 * GiB
    limit, why = working_set_limit(32 * GiB, 28672)
    assert limit == 28 * GiB and "iogpu.wired_limit_mb" in why


def test_radeon_through_amd_smi_and_rocm_smi(tmp_path: Path) -> None:
    r = recorded("linux-radeon-rx-7900-xtx", tmp_path)
    [g] = r.gpus
    assert (g.name, g.vram_total, g.vram_free) == ("Radeon RX 7900 XTX", 24560 * MiB, 24171 * MiB)
    assert (g.driver, g.arch, g.cores, g.source, g.backends) == ("6.8.5", "gfx1100", 96, "amd-smi",
                                                                 ("ROCm/HIP", "Vulkan"))
    assert r.memory == "discrete" and r.cpu.physical_cores == 16 and "avx512f" in r.cpu.flags
    [rg] = parse_rocm_smi((HW / "linux-radeon-rx-7900-xtx" / "rocm-smi.json").read_text())
    assert (rg.vram_total, rg.vram_free, rg.driver) == (25753026560, 25753026560 - 407896064, "6.8.5")
    assert find_gpu(g.name).bandwidth_gbs == 960


def test_amdsmi_bindings_are_used_where_installed() -> None:
    class Bindings:
        def amdsmi_init(self): pass
        def amdsmi_shut_down(self): pass
        def amdsmi_get_processor_handles(self): return ["h0"]
        def amdsmi_get_gpu_asic_info(self, h):
            return {"market_name": "Radeon RX 7800 XT", "target_graphics_version": "gfx1101"}
        def amdsmi_get_gpu_vram_usage(self, h): return {"vram_total": 16368, "vram_used": 368}
        def amdsmi_get_gpu_driver_info(self, h): return {"driver_version": "6.8.5"}

    gpus, status, detail = AmdProbe(Host("Linux", "x86_64", run=lambda argv: None), Bindings()).read()
    assert status == "ok" and "bindings" in detail
    assert (gpus[0].vram_total, gpus[0].vram_free, gpus[0].arch) == (16368 * MiB, 16000 * MiB, "gfx1101")


def test_intel_arc_through_xpu_smi_then_vulkan(tmp_path: Path) -> None:
    [g] = recorded("linux-intel-arc-a770-xpu-smi", tmp_path).gpus
    assert (g.vram_total, g.vram_free, g.backends, g.cores) == (16225243136, 15996325888, ("SYCL", "Vulkan"), 512)
    r = recorded("linux-intel-arc-a770-vulkan", tmp_path)
    [v] = r.gpus  # the integrated GPU and llvmpipe are not counted
    assert v.name == "Intel(R) Arc(tm) A770 Graphics (DG2)" and v.backends == ("Vulkan",)
    assert v.vram_total == 0 and "Vulkan's own device list" in v.note  # it says where it came from
    assert "Vulkan's own device list" in r.gpu_detail and "Intel(R) Graphics (RPL-S)" in r.gpu_detail
    assert find_gpu(v.name).vram_gib == 16  # the app fills VRAM from the table by this name


def test_untrusted_output_never_raises() -> None:
    junk = ["", "garbage", "{", "[1, 2]", '{"card0": "x"}', '{"device_list": [1, {"device_id": "zz"}]}',
            '[{"gpu": 0, "vram": {"size": {"value": -5, "unit": "MB"}}}]', "x" * 5_000_000, "[" * 100_000]
    for text in junk:
        parse_rocm_smi(text)
        parse_amd_smi(text, text)
        parse_vulkaninfo_summary(text)
        parse_json(text)
    assert as_int("1" * 40) is None and as_int(-3) is None and as_int("0x10") == 16
    [g] = parse_rocm_smi('{"card0": {"Card Series": "\\u001b[31mevil\\u0007", "VRAM Total Memory (B)": "NaN"}}')
    assert g.name == "[31mevil" and g.vram_total == 0


def test_recording_cannot_name_files_outside_its_folder(tmp_path: Path) -> None:
    (tmp_path / "machine.json").write_text('{"system": "Linux", "machine": "x86_64", '
                                           '"commands": {"rocm-smi": "../../../etc/passwd"}}')
    assert recorded_host(tmp_path).run(["rocm-smi"]) is None


def test_this_machine_has_none_of_these_devices(tmp_path: Path) -> None:
    report = probe(tmp_path)  # the real path: NVML, ROCm and Intel tools looked for, none found
    if not report.gpus:
        assert report.gpu_status in ("no-library", "no-device", "no-driver") and report.memory == "discrete"
        assert "ROCm" in report.gpu_detail and "Intel" in report.gpu_detail


def test_probes_merge_and_renumber() -> None:
    host = recorded_host(HW / "linux-radeon-rx-7900-xtx")
    gpus, status, _ = AllProbes([AmdProbe(host), AmdProbe(host), IntelProbe(host)]).read()
    assert status == "ok" and [g.index for g in gpus] == [0, 1]
    assert isinstance(probes_for(recorded_host(HW / "macbook-pro-m2-pro-32gb")), AllProbes)


# unified memory is one pool ---------------------------------------------------------------------------------
def test_no_byte_is_counted_twice_on_unified_memory(tmp_path: Path) -> None:
    r = recorded("macbook-pro-m2-pro-32gb", tmp_path)
    budget = machine_budget(r.gpus, r.ram_available)
    assert budget.unified and budget.ram_available == r.ram_available  # the pool, not pool + GPU share
    assert budget.gpu_room <= budget.ram_available
    model, _ = find_model("qwen2.5-14b-instruct")
    for quant in model.gguf.quants:
        est = estimate(facts_for(model, quant), FitRequest(ctx=8192), budget)
        assert est.memory == "unified" and est.total_bytes == est.gpu_bytes + est.cpu_bytes
        if est.fits != "no":
            assert est.total_bytes <= budget.ram_available and est.gpu_bytes <= budget.vram_free[0]
    # a launch whose GPU part fits the limit and whose CPU part fits the RAM, but not both together: the
    # discrete reading (two memories) would say it fits; one pool says no
    facts = facts_for(*find_model("qwen2.5-14b-instruct:Q8_0"))
    req = FitRequest(ctx=8192, gpu_layers=36)
    roomy = estimate(facts, req, Budget((64 * GiB,), 64 * GiB))
    gpu, cpu = roomy.gpu_bytes, roomy.cpu_bytes
    pool = gpu + cpu - GiB
    assert estimate(facts, req, Budget((gpu + GiB,), pool)).fits != "no"  # as if two memories
    assert estimate(facts, req, Budget((gpu + GiB,), pool, unified=True)).fits == "no"


def test_ledger_devices_count_each_byte_once() -> None:
    assert device_bytes(2 * GiB, 6 * GiB, unified=True) == {UNIFIED: 8 * GiB, "gpu0": 6 * GiB}
    assert device_bytes(2 * GiB, 6 * GiB, unified=False) == {"ram": 2 * GiB, "gpu0": 6 * GiB}
    assert device_bytes(2 * GiB, 0, unified=True) == {UNIFIED: 2 * GiB}


def test_recommend_on_a_64gb_mac_runs_what_a_mac_owner_would(tmp_path: Path) -> None:
    r = recorded("macbook-pro-m3-max-64gb", tmp_path)
    budget = machine_budget(r.gpus, r.ram_available)
    options, _ = recommend(budget, ctx=8192, gpu_bandwidth_gbs=find_gpu("M3 Max 64GB").bandwidth_gbs,
                           ram_bandwidth_gbs=100)
    top = options[0]
    assert top.gpu_layers == top.n_layers  # all of it on the GPU (Metal)
    assert top.gpu_bytes <= r.gpus[0].vram_total and top.total_bytes <= r.ram_available
    assert top.model in ("llama-3.3-70b-instruct", "qwen2.5-32b-instruct", "qwen3-32b")
    assert top.tokens_per_s >= 6  # about reading pace on 400 GB/s (a 70B at IQ4_XS: ~7.5)
    assert all(o.gpu_bytes <= 48 * GiB for o in options)


@pytest.mark.parametrize(("name", "vram", "unified"), [("M3 Max 64GB", 64, True), ("M2 Pro 32GB", 32, True),
                                                      ("RX 7900 XTX", 24, False), ("Arc A770", 16, False),
                                                      ("M1", 8, True)])
def test_gpu_table_knows_other_vendors(name: str, vram: int, unified: bool) -> None:
    spec = find_gpu(name)
    assert (spec.vram_gib, spec.unified) == (vram, unified)


def test_engine_devices_follow_the_platform() -> None:
    from llmctl.runtimes.llama_cpp import engine_gpu_problem, wheel_devices

    assert wheel_devices("Darwin", "arm64") == ("cpu", "metal") and wheel_devices("Linux", "x86_64") == ("cpu",)
    mac = SimpleNamespace(name="Apple M2 Pro", vendor="apple", backends=("Metal",), devices=("metal",))
    assert engine_gpu_problem([mac], ("cpu", "metal")) is None
    problem, fix = engine_gpu_problem([mac], ("cpu",))
    assert "not used" in problem and "Metal" in fix
    amd = SimpleNamespace(name="Radeon RX 7900 XTX", vendor="amd", backends=("ROCm/HIP", "Vulkan"),
                          devices=("rocm", "vulkan"))
    assert "GGML_HIP" in engine_gpu_problem([amd], ("cpu",))[1]
    assert engine_gpu_problem([amd], ("cpu", "gpu: as built")) is None  # a user's own build may use it
