"""The agent the worker tests run through the ``command`` runtime, as a real process.

Its one argument is the mission objective, a list of steps:
    "pid:/tmp/x say:hello sleep:2 say:done"   write own pid, print, sleep, print
    "fail:3"                                  exit 3
    "nul"                                     print a line with a NUL byte
Every step prints a line, so the worker records progress events.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

for step in sys.argv[1].split():
    verb, _, arg = step.partition(":")
    if verb == "pid":
        tmp = Path(arg + ".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(arg)
        print(f"pid {os.getpid()}", flush=True)
    elif verb == "say":
        print(arg, flush=True)
    elif verb == "sleep":
        time.sleep(float(arg))
        print(f"slept {arg}", flush=True)
    elif verb == "nul":
        print("a\x00b", flush=True)  # PostgreSQL cannot store NUL in text or JSON
    elif verb == "fail":
        print("failing on purpose", file=sys.stderr, flush=True)
        sys.exit(int(arg))
