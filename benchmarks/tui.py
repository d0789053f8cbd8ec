"""The TUI's two speed figures (issue 5):

    .venv/bin/python benchmarks/tui.py [--seconds 30] [--rate 500]

1. time to first paint of `llmctl`: the real command in a pseudo-terminal, from spawn until the dashboard's first
   frame is on the screen (target <= 600 ms). A controller must answer: the script starts one (on a tiny model)
   and keeps it out of the timing, as a user's background controller would be.
2. screen switches (issue 24): headless at 80x24 with the test suite's fake client, from the key press until the
   new section is on screen with its data (its workers done, one refresh after): the first visit (the screen is
   imported and built) and a later one (it is kept), per section.
3. CPU cost of the chat pane rendering a synthetic stream of `--rate` tokens/s for `--seconds` s: process CPU time
   over wall time, as a share of one core (target <= 30 %). The app runs headless (layout and rendering happen,
   only the terminal write is skipped), fed by the test suite's fake client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "tui"))


def first_paint(home: Path, runs: int = 5) -> list[float]:
    env = {**os.environ, "LLMCTL_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "36"}
    exe = str(Path(sys.executable).with_name("llmctl"))
    times = []
    for _ in range(runs):
        master, slave = pty.openpty()
        t0 = time.perf_counter()
        proc = subprocess.Popen([exe], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        seen = b""
        try:
            while time.perf_counter() - t0 < 20:
                ready, _, _ = select.select([master], [], [], 0.05)
                if ready:
                    try:
                        seen += os.read(master, 65536)
                    except OSError:
                        break
                    if b"Endpoint" in seen:  # a dashboard frame is on the screen
                        times.append(time.perf_counter() - t0)
                        break
        finally:
            proc.kill()
            proc.wait()
            os.close(master)
    return times


async def chat_cpu(seconds: float, rate: float) -> float:
    from fakes import FakeClient

    from llmctl.app.paths import resolve_paths
    from llmctl.app.settings import load_settings
    from llmctl.app.tui import LlmctlApp

    words = int(seconds * rate)

    class PacedClient(FakeClient):
        """Yields tokens on a schedule of `rate` per second (sleeping only when ahead, so the pace is exact)."""

        async def stream_chat(self, model, messages, **params):
            from llmctl.app.client.api import ChatTurn

            start = time.perf_counter()
            turn = ChatTurn(ttft_s=0.0)
            for i in range(words):
                ahead = start + i / rate - time.perf_counter()
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
                piece = f"word{i % 97} " + ("\n\n" if i % 60 == 59 else "")
                turn.text += piece
                turn.tokens += 1
                yield piece
            turn.seconds = time.perf_counter() - start
            yield turn

    client = PacedClient()
    app = LlmctlApp(load_settings(resolve_paths()), client, mode="chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        app.screen.query_one("#chat-max-tokens").value = str(words)
        cpu0, t0 = time.process_time(), time.perf_counter()
        await pilot.press("x", "enter")
        await app.workers.wait_for_complete()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    print(f"  streamed {words} tokens in {wall:.1f} s wall ({words / wall:.0f} tok/s delivered)")
    return cpu / wall


SECTIONS = [("2", "models"), ("3", "servers"), ("4", "chat"), ("5", "monitor"), ("6", "bench"), ("1", "dashboard")]


async def screen_switches(rounds: int = 3) -> dict[str, tuple[float, list[float]]]:
    """section -> (first visit, later visits) in seconds."""
    from fakes import FakeClient

    from llmctl.app.paths import resolve_paths
    from llmctl.app.settings import load_settings
    from llmctl.app.tui import LlmctlApp

    times: dict[str, list[float]] = {mode: [] for _key, mode in SECTIONS}
    app = LlmctlApp(load_settings(resolve_paths()), FakeClient(), mode="dashboard")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        for _ in range(rounds + 1):
            for key, mode in SECTIONS:
                # F-keys: a number typed while Chat's input has focus is text
                t0 = time.perf_counter()
                await pilot.press(f"f{key}")
                await app.workers.wait_for_complete()
                await pilot.pause()
                assert app.current_mode == mode, (app.current_mode, mode)
                times[mode].append(time.perf_counter() - t0)
    return {mode: (t[0], t[1:]) for mode, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--switch-only", action="store_true", help="only the screen switches (no controller needed)")
    args = ap.parse_args()
    switches = asyncio.run(screen_switches())
    print("screen switch at 80x24 (press to data on screen): first visit / median of later visits")
    for mode, (first, later) in switches.items():
        print(f"  {mode:<10} {first * 1000:6.0f} ms / {statistics.median(later) * 1000:4.0f} ms")
    if args.switch_only:
        return
    from tiny_gguf import write_tiny_llama

    from llmctl.catalog.store import ModelStore
    from llmctl.runtimes.process import free_port

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        ModelStore(home / "data").import_file(write_tiny_llama(Path(tmp) / "tiny.gguf"), "tiny")
        port = free_port()
        env = {**os.environ, "LLMCTL_HOME": str(home), "LLMCTL_SERVER__PORT": str(port)}
        server = subprocess.Popen([sys.executable, "-m", "llmctl", "serve"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            time.sleep(2.0)
            os.environ["LLMCTL_SERVER__PORT"] = str(port)
            paints = first_paint(home)
        finally:
            server.terminate()
            server.wait(30)
        os.environ["LLMCTL_HOME"] = str(home)
        share = asyncio.run(chat_cpu(args.seconds, args.rate))
    print(f"time to first paint of `llmctl`: median {statistics.median(paints) * 1000:.0f} ms, "
          f"max {max(paints) * 1000:.0f} ms over {len(paints)} runs   (target <= 600 ms)")
    print(f"chat pane at {args.rate:.0f} tok/s for {args.seconds:.0f} s: {share:.0%} of one core   (target <= 30 %)")


if __name__ == "__main__":
    main()
