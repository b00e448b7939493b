"""A mission program that tries things and says how each went; the sandbox tests run it for real.

Standard library only: the tests copy it out of the checkout (which the sandbox
hides) and run it with the base interpreter. Its one argument is a JSON list of
attempts; each prints one JSON line ``{"op", "target", "ok", "error", "result"}``:

    ["write", PATH]            append a line to PATH (created if missing)
    ["read", PATH]             read PATH
    ["list", DIR]              list DIR
    ["link", NAME, TARGET]     plant symlink NAME -> TARGET in the working directory (replacing NAME, as ln -sf)
    ["fifo", NAME]             plant a FIFO NAME in the working directory
    ["once", PATH]             on a later run (PATH exists) stop here with exit 0; else create PATH
    ["env"]                    the environment it was given
    ["tempfile"]               create a file through tempfile (TMPDIR)
    ["connect", HOST, PORT]    open a TCP connection; the first line the server says, if any
    ["echo", HOST, PORT, N]    send N bytes to an echo server, half-close, read the answer to its end;
                               {"same": whether it came back unchanged, "seconds": connect to last byte}
    ["udp", HOST, PORT]        send a UDP datagram
    ["unix", PATH]             connect to a unix socket (a leading "@" means an abstract one)
    ["survivors", MARKER]      leave a setsid child and a double-forked grandchild sleeping, MARKER in
                               their command lines, and go on (the mission may end with them running)
    ["family", PIDFILE, N]     start N sleeping children, then write "done" to PIDFILE
    ["setsid", PIDFILE]        start a child in a session of its own, then write "done"
    ["await", PATH]            wait until PATH exists
    ["run", PROGRAM, ARG...]   run a program; its stdout
    ["sleep"]                  sleep without end
    ["flood"]                  print without end
    ["allocate", MB]           allocate and touch MB MiB of memory
    ["fork", N]                start N sleeping children; a fork that fails ends the agent with exit 3
    ["fill", PATH, KB]         write KB KiB to PATH, with SIGXFSZ at its default (as a C program has it)
    ["spin"]                   burn CPU time without end
    ["print", N]               print N lines of 1 KiB to stdout, and every 100th also to stderr
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any


def attempt(op: str, *args: Any) -> Any:
    if op == "write":
        with open(args[0], "a") as f:
            f.write("written from inside the sandbox\n")
        return None
    if op == "read":
        with open(args[0]) as f:
            return f.read()
    if op == "list":
        return sorted(os.listdir(args[0]))
    if op == "link":
        if os.path.lexists(args[0]):
            os.unlink(args[0])
        os.symlink(args[1], args[0])
        return None
    if op == "fifo":
        os.mkfifo(args[0])
        return None
    if op == "once":
        if os.path.exists(args[0]):
            print(json.dumps({"op": op, "target": args[0], "ok": True, "error": None, "result": "again"}), flush=True)
            sys.exit(0)
        with open(args[0], "w") as f:
            f.write("first run")
        return "first"
    if op == "env":
        return dict(os.environ)
    if op == "tempfile":
        fd, path = tempfile.mkstemp(prefix="sandboxed-")
        os.write(fd, b"scratch")
        os.close(fd)
        return path
    if op == "connect":
        with socket.create_connection((args[0], int(args[1])), timeout=5) as conn:
            conn.settimeout(2)
            try:
                return conn.recv(100).decode() or None
            except TimeoutError:
                return None
    if op == "echo":
        sent = os.urandom(int(args[2]))
        started = time.monotonic()
        with socket.create_connection((args[0], int(args[1])), timeout=10) as conn:
            # A thread sends while this one reads: the echo must not wait on a full buffer.
            sender = threading.Thread(target=lambda: (conn.sendall(sent), conn.shutdown(socket.SHUT_WR)))
            sender.start()
            received = b"".join(iter(lambda: conn.recv(65536), b""))
            sender.join()
        return {"same": received == sent, "bytes": len(received), "seconds": round(time.monotonic() - started, 4)}
    if op == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"hello", (args[0], int(args[1])))
        return None
    if op == "unix":
        address = "\0" + args[0][1:] if args[0].startswith("@") else args[0]
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(address)
        return None
    if op == "survivors":
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)", args[0]]
        subprocess.Popen(sleeper, start_new_session=True)
        # The double fork: a child that starts the sleeper and exits at once, orphaning it.
        subprocess.run([sys.executable, "-c", f"import subprocess; subprocess.Popen({sleeper!r})"], check=True)
        return None
    if op in ("family", "setsid"):
        n = int(args[1]) if op == "family" else 1
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
        for _ in range(n):
            subprocess.Popen(sleeper, start_new_session=op == "setsid")
        with open(args[0] + ".tmp", "w") as f:
            f.write("done")
        os.replace(args[0] + ".tmp", args[0])
        return None
    if op == "run":
        return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=30).stdout
    if op == "await":
        while not os.path.exists(args[0]):
            time.sleep(0.01)
        return None
    if op == "sleep":
        while True:
            time.sleep(60)
    if op == "flood":
        while True:
            print("y" * 4096, flush=True)
    if op == "allocate":
        held = [bytearray(1024 * 1024) for _ in range(int(args[0]))]  # bytearray writes zeros: touched
        return len(held)
    if op == "fork":
        for n in range(int(args[0])):
            try:
                child = os.fork()
            except OSError as exc:
                print(json.dumps({"op": op, "target": args[0], "ok": False, "error": str(exc), "result": n}))
                sys.exit(3)
            if child == 0:
                time.sleep(600)
                os._exit(0)
        return int(args[0])
    if op == "fill":
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        with open(args[0], "wb") as f:
            for _ in range(int(args[1])):
                f.write(b"x" * 1024)
                f.flush()
        return int(args[1])
    if op == "print":
        for n in range(int(args[0])):
            print(f"line {n:06d} " + "y" * 1012)
            if n % 100 == 0:
                print(f"stderr line {n}", file=sys.stderr)
        return int(args[0])
    if op == "spin":
        while True:
            pass
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    for op, *args in json.loads(sys.argv[1]):
        line: dict[str, Any] = {"op": op, "target": args[0] if args else None}
        try:
            line.update(ok=True, error=None, result=attempt(op, *args))
        except OSError as exc:
            line.update(ok=False, error=f"{type(exc).__name__}: {exc.strerror or exc}", result=None)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
