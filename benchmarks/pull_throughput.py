"""`llmctl pull` throughput against curl for the same file from the loopback Hub test server, and the bytes
fetched again after a download cut at half.

    .venv/bin/python benchmarks/pull_throughput.py [--mib 256] [--runs 3]

Targets (issue 4): pull >= 0.9x curl's throughput; after a cut at 50 %, at most 1 % re-fetched beyond the
missing half.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hub_server import HubServer  # noqa: E402

from llmctl.catalog.downloads import DownloadError, HubDownloader  # noqa: E402

REPO = "bench/big-GGUF"
NAME = "big.gguf"


def pull_once(cache: Path, url: str) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    dl = HubDownloader(cache, endpoint=url)
    t0 = time.perf_counter()
    for _ in dl.pull(dl.plan(REPO, lambda n: n == NAME)):
        pass
    return time.perf_counter() - t0


def curl_once(url: str, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sSL", "-o", str(out), f"{url}/{REPO}/resolve/main/{NAME}"], check=True)
    return time.perf_counter() - t0


def _serve(size: int, queue) -> None:
    """The throughput runs use a server in its own process: in-process it would share the GIL with the puller."""
    server = HubServer()
    server.add_file(REPO, NAME, os.urandom(size))
    server.start()
    queue.put(server.url)
    time.sleep(3600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    os.environ.pop("HF_HUB_OFFLINE", None)
    size = args.mib << 20
    import multiprocessing

    queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(size, queue), daemon=True)
    server.start()
    url = queue.get(timeout=60)
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "hub", Path(tmp) / "curl.out"
        pulls, curls = [], []
        for _ in range(args.runs):  # alternate so drift hits both
            curls.append(curl_once(url, out))
            pulls.append(pull_once(cache, url))
    server.terminate()
    hub = HubServer()
    hub.add_file(REPO, NAME, os.urandom(size))
    hub.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "hub"
            hub.cut_after = size // 2
            dl = HubDownloader(cache, endpoint=hub.url)
            try:
                for _ in dl.pull(dl.plan(REPO, lambda n: n == NAME)):
                    pass
            except DownloadError:
                pass
            hub.cut_after = None
            before = hub.bytes_served()
            for _ in dl.pull(dl.plan(REPO, lambda n: n == NAME)):
                pass
            refetched = hub.bytes_served() - before
    finally:
        hub.stop()
    mb = size / 1e6
    p, c = statistics.median(pulls), statistics.median(curls)
    print(f"{args.mib} MiB file, {args.runs} alternating runs each")
    print(f"  curl  {mb / c:8.1f} MB/s   llmctl pull {mb / p:8.1f} MB/s   ratio {c / p:.2f}   (target >= 0.9)")
    extra = refetched - (size - size // 2)
    missing = (size - size // 2) / 2**20
    print(f"  after a cut at 50 %: re-fetched {refetched / 2**20:.1f} MiB for a missing {missing:.1f} MiB, "
          f"{extra / size:+.2%} of the file beyond it   (target <= 1 %)")


if __name__ == "__main__":
    main()
