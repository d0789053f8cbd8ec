"""A cheap look at a model's chat template before an engine renders it.

llama.cpp renders the GGUF's template once while loading (to learn its format), in C++ with no time or memory
bound: ``{% for i in range(2000000000) %}`` grew one engine to 16.6 GB in under a minute. This check refuses the
plain forms (a loop over a literal range of more than ``MAX_RANGE``, a template larger than ``MAX_TEMPLATE``)
before launch; what it cannot see is caught by the supervisor's memory watch on loading engines.
"""

from __future__ import annotations

import re

MAX_RANGE = 100_000  # real templates loop over messages and tools, never over a range this long
MAX_TEMPLATE = 1 << 20  # the largest real templates (tool-calling ones) are tens of KiB
_RANGE = re.compile(r"\brange\s*\(\s*([-+]?[\d_]+)(?:\s*,\s*([-+]?[\d_]+))?")


def template_problem(template: str | None) -> str | None:
    """Why ``template`` must not be rendered, or None when this check sees nothing wrong."""
    if not template:
        return None
    if len(template) > MAX_TEMPLATE:
        return f"its chat template is {len(template):,} characters long (at most {MAX_TEMPLATE:,} are accepted)"
    for match in _RANGE.finditer(template):
        numbers = [int(g.replace("_", "")) for g in match.groups() if g is not None]
        span = numbers[0] if len(numbers) == 1 else numbers[1] - numbers[0]
        if abs(span) > MAX_RANGE:
            return (f"its chat template loops {abs(span):,} times ({match.group(0).strip()}...); rendering it would "
                    "take the machine's memory")
    return None
