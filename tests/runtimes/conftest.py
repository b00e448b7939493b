"""Fixtures for the runtime tests; the helpers live in ``runtime_harness``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from runtime_harness import FAKE_OPENAI, FakeOpenAI, Harness


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


@pytest.fixture
def fake_openai() -> Iterator[Callable[..., Any]]:
    """``with fake_openai(fail_first=1) as server:`` starts ``tests/fake_openai.py`` on a free port."""
    started: list[subprocess.Popen[str]] = []

    @contextmanager
    def start(**opts: Any) -> Iterator[FakeOpenAI]:
        args = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]
        proc = subprocess.Popen([sys.executable, str(FAKE_OPENAI), *args], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        yield FakeOpenAI(f"http://127.0.0.1:{port}/v1")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
