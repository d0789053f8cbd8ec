"""An engine in a network namespace of its own: its Unix socket is then its only door.

vLLM's worker opens about a dozen TCP ports on 127.0.0.1 for torch.distributed and ZMQ, with no authentication:
any local user could connect to them. Run through ``unshare -rn`` (a user namespace mapping the caller to root, and
an empty network namespace), the engine gets a loopback of its own — brought up before the engine starts, since
torch.distributed needs one — and none of its ports can be reached from the machine; the gateway reaches it over
its Unix socket, which is a file and so crosses namespaces. Where the machine refuses user namespaces (a kernel
with unprivileged ones off, AppArmor's ``restrict_unprivileged_userns``, a container's seccomp), the engine runs as
before and the reason is written to its log (``test_netns``).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence

# run by the engine's own python inside the namespace: loopback up (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP;
# struct ifreq is 40 bytes), then exec the engine in place, so the supervised pid stays the engine's
LOOPBACK_UP = (
    "import fcntl,os,socket,struct,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "f=struct.unpack('16sH22x',fcntl.ioctl(s,0x8913,struct.pack('16sH22x',b'lo',0)))[1]\n"
    "fcntl.ioctl(s,0x8914,struct.pack('16sH22x',b'lo',f|1))\n"
    "s.close()\n"
    "os.execv(sys.argv[1],sys.argv[1:])\n"
)


@functools.cache
def netns_problem(unshare: str | None = "unshare") -> str | None:
    """None when ``unshare -rn`` works on this machine; otherwise why it does not (asked once)."""
    path = shutil.which(unshare) if unshare else None
    if path is None:
        return "`unshare` (util-linux) is not installed"
    try:
        done = subprocess.run([path, "-rn", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare -rn` could not run: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return f"`unshare -rn` is refused here ({last}): user namespaces are off or restricted"
    return None


def isolated(argv: Sequence[str], *, unshare: str | None = "unshare") -> tuple[tuple[str, ...], str]:
    """``argv`` (whose first item is a python) run in a network namespace of its own with only its loopback, and
    a line saying so; or ``argv`` unchanged and a line saying why not and what remains open."""
    problem = netns_problem(unshare)
    if problem is not None:
        return tuple(argv), (f"no network namespace for the engine: {problem}; its worker's loopback TCP ports "
                             "stay reachable by local users")
    path = shutil.which(unshare) or unshare
    return (path, "-rn", "--", argv[0], "-c", LOOPBACK_UP, *argv), \
        "the engine runs in a network namespace of its own: its Unix socket is its only door"
