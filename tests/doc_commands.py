# ruff: noqa: E501  (the commands are verbatim copies of the docs' lines)
"""Every shell command the docs show, and what exercises it.

``tests/test_docs.py::test_every_doc_command_is_exercised`` collects the commands of the
fenced ``sh``/``bash``/``shell``/``console`` blocks of ``docs/**/*.md``, ``README.md``
and ``DEVELOPERS.md`` (snippet includes resolved; a ``console`` block's commands are its
``$ `` lines; ``#`` comment lines are skipped; ``\\``-continued lines are one command),
and fails unless each is a key of :data:`COMMANDS`. The value says how it is exercised:

- :class:`Test`: the named test in ``tests/test_docs.py`` runs the command for real,
  through bash, from the string here, and fails if it did not run every command
  assigned to it (:class:`Runner`). Before running, ``127.0.0.1:8000`` and
  ``--port 8000`` become a free port, and the entry's ``replace`` pairs apply (a Redis
  URL, a host name): nothing else changes.
- :class:`InCI`: ``.ci/run`` holds this exact line, and runs it.
- :class:`Install`: a ``pip install`` of this package from PyPI; the check verifies the
  project name and that every extra named exists in pyproject.toml. ``.ci/run``
  installs the package from the checkout with those extras (``[test]`` includes them).
- :class:`BenchArgs`: a benchmark (minutes of load; run by hand, its output is in
  docs/benchmarks.md); the check parses the exact arguments with the script's own
  argparse parser, without running it.
- :class:`Parts`: a ``&&`` chain, one of the above per part.

To register a new command: add it here, with the test that runs it (add it to that
test's scenario) or the CI line; the failure message says which file shows it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Test:
    test: str
    replace: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class InCI:
    pass


@dataclass(frozen=True)
class Install:
    pass


@dataclass(frozen=True)
class BenchArgs:
    pass


@dataclass(frozen=True)
class Parts:
    parts: tuple[Test | InCI | Install | BenchArgs, ...]


Kind = Test | InCI | Install | BenchArgs | Parts

DEMO = (
    'python3 -m venv .venv && .venv/bin/pip install -e ".[demo]" && .venv/bin/python -m example_app'
)
REDIS_WORKERS = "REALTIME_REDIS_URL=redis://10.0.0.5:6379/0 sanic app:app --host 0.0.0.0 --port 8000 --workers 4"

COMMANDS: dict[str, Kind] = {
    # README: the Quick start, run as it reads (tests/test_docs.py::test_readme_quickstart).
    "mkdir quickstart && cd quickstart": Test("test_readme_quickstart"),
    "../.venv/bin/sanic app:app": Test(
        "test_readme_quickstart", (("sanic app:app", "sanic app:app --port {port}"),)
    ),
    "../.venv/bin/python client.py": Test("test_readme_quickstart"),
    'curl -s -X POST http://127.0.0.1:8000/logs -H \'Content-Type: application/json\' -d \'{"level": "error", "component": "db", "message": "db down"}\'': Test(
        "test_readme_quickstart"
    ),
    # README, demo.md: the demo command. .ci/run creates the venv and installs [demo];
    # the test runs the demo on a free port (--port appended).
    DEMO: Parts(
        (
            InCI(),
            InCI(),
            Test("test_demo_commands", (("-m example_app", "-m example_app --port {port}"),)),
        )
    ),
    # README, DEVELOPERS.md: the test command, and CI itself.
    'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest': InCI(),
    ".ci/run": InCI(),
    # README and DEVELOPERS.md: building and serving the docs.
    '.venv/bin/pip install -e ".[docs]" && .venv/bin/mkdocs build --strict': InCI(),
    ".venv/bin/mkdocs serve --dev-addr 127.0.0.1:8000": Test("test_docs_serve"),
    # README: watching and publishing to the demo.
    ".venv/bin/sanic-realtime tail http://127.0.0.1:8000 --channel logs --filter level=warn": Test(
        "test_demo_commands"
    ),
    ".venv/bin/sanic-realtime tail http://127.0.0.1:8000 -c stats -f window=5m -f interval=5s --json": Test(
        "test_demo_commands"
    ),
    "export REALTIME_ADMIN_TOKEN=change-me": Test("test_demo_commands"),
    ".venv/bin/sanic-realtime top http://127.0.0.1:8000": Test("test_demo_commands"),
    ".venv/bin/sanic-realtime publish http://127.0.0.1:8000 --channel logs --type log_update \\\n"
    '    --data \'{"level": "error", "message": "db down"}\'': Test("test_demo_commands"),
    'curl -s -H "Authorization: Bearer $REALTIME_ADMIN_TOKEN" http://127.0.0.1:8000/admin/ws/stats': Test(
        "test_demo_commands"
    ),
    # demo.md
    ".venv/bin/sanic-realtime tail http://127.0.0.1:8000 -c logs -f level=error": Test(
        "test_demo_commands"
    ),
    ".venv/bin/sanic-realtime tail http://127.0.0.1:8000 -c stats -f window=5m -f interval=5s": Test(
        "test_demo_commands"
    ),
    'curl -s -X POST http://127.0.0.1:8000/api/tasks -d \'{"name": "backfill", "total": 50}\'': Test(
        "test_demo_commands"
    ),
    # Installing from PyPI: quickstart.md, tutorial.md, clients.md, README, deployment.md,
    # how-to/redis-workers.md.
    "pip install sanic-realtime": Install(),
    "pip install 'sanic-realtime[redis]'": Install(),
    "pip install 'sanic-realtime[tui]'": Install(),  # clients.md: for `sanic-realtime top`
    # quickstart.md, clients.md, configuration.md, protocol.md: the quick start's app.
    "sanic app:app --port 8000": Test("test_quickstart_commands"),
    "sanic-realtime tail http://127.0.0.1:8000 --channel logs --filter level=warn": Test(
        "test_quickstart_commands"
    ),
    'curl -s -X POST http://127.0.0.1:8000/logs -d \'{"level": "info", "message": "cache warm"}\'': Test(
        "test_quickstart_commands"
    ),
    'curl -s -X POST http://127.0.0.1:8000/logs -d \'{"level": "error", "message": "db down"}\'': Test(
        "test_quickstart_commands"
    ),
    "sanic-realtime tail http://127.0.0.1:8000 --channel logs --filter level=error": Test(
        "test_quickstart_commands"
    ),
    "sanic-realtime tail http://127.0.0.1:8000 -c logs --json | jq --unbuffered -r '.data.message'": Test(
        "test_quickstart_commands"
    ),
    "sanic-realtime publish http://127.0.0.1:8000 --channel logs --type log_update \\\n"
    '    --data \'{"level": "error", "message": "db down"}\'': Test("test_quickstart_commands"),
    "python -c \"from sanic_realtime.config import load_yaml; print(load_yaml('realtime.yaml'))\"": Test(
        "test_quickstart_commands"
    ),
    "curl -s -X POST http://127.0.0.1:8000/admin/ws/broadcast \\\n"
    "  -H 'Content-Type: application/json' \\\n"
    '  -d \'{"channel": "stats", "type": "stats_update", "data": {"cpu": 0.5}}\'': Test(
        "test_quickstart_commands"
    ),
    # tutorial.md
    "sanic orders:app --port 8000": Test("test_tutorial_commands"),
    "sanic-realtime tail http://127.0.0.1:8000 --channel orders --filter priority=high": Test(
        "test_tutorial_commands"
    ),
    'curl -s -X POST http://127.0.0.1:8000/orders -d \'{"customer": "acme", "item": "bolts", "priority": "urgent"}\'': Test(
        "test_tutorial_commands"
    ),
    'curl -s -X PATCH http://127.0.0.1:8000/orders/1 -d \'{"status": "shipped"}\'': Test(
        "test_tutorial_commands"
    ),
    "python watch_orders.py ws://127.0.0.1:8000/ws": Test("test_tutorial_commands"),
    # README, how-to/redis-workers.md: four workers on Redis (the test's Redis, a key
    # prefix of its own is set in the copied realtime.yaml).
    REDIS_WORKERS: Test(
        "test_redis_workers_command",
        (("redis://10.0.0.5:6379/0", "{redis_url}"), ("--host 0.0.0.0", "--host 127.0.0.1")),
    ),
    # protocol.md: against a server with JWT auth and a static admin token.
    'curl -s -X POST https://ops.example.com/ws/ticket -H "Authorization: Bearer $TOKEN"': Test(
        "test_protocol_commands", (("https://ops.example.com", "http://127.0.0.1:{port}"),)
    ),
    "curl -s -X POST http://127.0.0.1:8000/admin/ws/broadcast \\\n"
    "  -H \"Authorization: Bearer $REALTIME_ADMIN_TOKEN\" -H 'Content-Type: application/json' \\\n"
    '  -d \'{"channel": "logs", "type": "notice", "data": {"text": "hi"}, "target": {"user_id": "carol"}}\'': Test(
        "test_protocol_commands"
    ),
}

# benchmarks.md: every bench command (see BenchArgs).
for _line in """\
.venv/bin/python bench/fanout.py
.venv/bin/python bench/fanout.py --clients 100,1000 --yield-every 1,0
.venv/bin/python bench/fanout.py --pause-reading
.venv/bin/python bench/fanout.py --quick
.venv/bin/python bench/compare.py
.venv/bin/python bench/profile.py --clients 5000
.venv/bin/python bench/compare.py
.venv/bin/python bench/compare.py --only steady --plot ''
.venv/bin/python bench/compare.py --clients 100,1000 --rates 100,200 --idle-clients 2000
.venv/bin/python bench/redis_fanout.py --clients 100,1000
.venv/bin/python bench/redis_fanout.py
""".splitlines():
    COMMANDS[_line] = BenchArgs()


# --------------------------------------------------------------------------- collecting

SHELL_LANGS = {"sh", "bash", "shell", "console"}
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^\n]*)$")
_SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')


def doc_files() -> list[Path]:
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md", ROOT / "DEVELOPERS.md"]


def _include(line: str) -> list[str]:
    m = _SNIPPET.match(line)
    if not m:
        return [line]
    path, _, section = m.group("path").partition(":")
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    if section:
        start = next(i for i, x in enumerate(lines) if f"[start:{section}]" in x)
        end = next(i for i, x in enumerate(lines) if f"[end:{section}]" in x)
        lines = lines[start + 1 : end]
    return lines


def commands_in(text: str) -> list[str]:
    """The commands of the shell blocks of one Markdown text."""
    found: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group("fence"), (m.group("info").split() or [""])[0]
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.extend(_include(lines[i][len(m.group("indent")) :]))
            i += 1
        i += 1
        if lang in SHELL_LANGS:
            found.extend(_split(body, console=lang == "console"))
    return found


def _strip_comment(line: str) -> str:
    """``cmd  # note`` -> ``cmd`` (a ``#`` inside quotes stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def _split(body: list[str], *, console: bool) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    for line in map(_strip_comment, body):
        if current:
            current.append(line)
        elif console:
            if not line.startswith("$ "):
                continue
            current = [line[2:]]
        else:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            current = [line]
        if not line.endswith("\\"):
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return out


def all_commands() -> dict[str, list[str]]:
    """command -> the files that show it."""
    found: dict[str, list[str]] = {}
    for path in doc_files():
        for command in commands_in(path.read_text(encoding="utf-8")):
            found.setdefault(command, []).append(str(path.relative_to(ROOT)))
    return found


def assigned(test: str) -> list[tuple[str, int | None]]:
    """(command, part index or None) that ``test`` must run."""
    out: list[tuple[str, int | None]] = []
    for command, kind in COMMANDS.items():
        if isinstance(kind, Test) and kind.test == test:
            out.append((command, None))
        elif isinstance(kind, Parts):
            out += [
                (command, n)
                for n, p in enumerate(kind.parts)
                if isinstance(p, Test) and p.test == test
            ]
    return out


def parts_of(command: str) -> list[str]:
    return [p.strip() for p in command.split("&&")]


# --------------------------------------------------------------------------- running


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A command started through bash in its own process group; its output is collected."""

    def __init__(self, script: str, cwd: Path, env: dict[str, str]) -> None:
        self.script = script
        self.popen = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        while chunk := self.popen.stdout.read1(4096):
            self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.output):
                return self.output
            if self.popen.poll() is not None and not predicate(self.output):
                time.sleep(0.2)  # the reader may still hold the last lines
                if predicate(self.output):
                    return self.output
                raise AssertionError(
                    f"{self.script!r} exited ({self.popen.returncode}) before {what}:\n{self.output[-3000:]}"
                )
            time.sleep(0.1)
        raise AssertionError(
            f"{self.script!r}: no {what} within {timeout} s:\n{self.output[-3000:]}"
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


class Runner:
    """Runs the docs' commands assigned to one test, exactly, with a free port."""

    def __init__(
        self, test: str, cwd: Path, env: dict[str, str] | None = None, **values: str
    ) -> None:
        self.test = test
        self.cwd = cwd
        self.port = free_port()
        self.values = {"port": str(self.port), **values}
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.todo = set(assigned(test))
        assert self.todo, f"no command of the docs is assigned to {test}"
        self.processes: list[Process] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, command: str, part: int | None = None) -> str:
        """The text bash runs for ``command`` (or its ``&&`` part number ``part``)."""
        assert (command, part) in assigned(self.test), (
            f"{command!r} (part {part}) is not assigned to {self.test} in tests/doc_commands.py"
        )
        kind = COMMANDS[command]
        if isinstance(kind, Parts):
            assert part is not None
            kind = kind.parts[part]
            command = parts_of(command)[part]
        assert isinstance(kind, Test)
        text = command.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
        text = text.replace("--port 8000", f"--port {self.port}")
        for old, new in kind.replace:
            text = text.replace(old, new.format(**self.values))
        return text

    def _mark(self, command: str, part: int | None) -> None:
        self.todo.discard((command, part))

    def take(self, command: str, part: int | None = None) -> str:
        """The script of a command the test runs its own way (e.g. in a terminal, for a
        full-screen one), counted as run."""
        script = self.script(command, part)
        self._mark(command, part)
        return script

    def run(self, command: str, part: int | None = None, timeout: float = 60) -> str:
        """Run to completion; fails unless it exits 0. Returns its output."""
        script = self.script(command, part)
        self._mark(command, part)
        if re.fullmatch(r"export \w+=\S+", script):
            name, value = script[len("export ") :].split("=", 1)
            self.env[name] = shlex.split(value)[0]
            return ""
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, (
            f"{script!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def start(self, command: str, part: int | None = None) -> Process:
        """Start a long-running command (a server, a tail); stopped by :meth:`close`."""
        script = self.script(command, part)
        self._mark(command, part)
        process = Process(script, self.cwd, self.env)
        self.processes.append(process)
        return process

    def serve(
        self, command: str, part: int | None = None, path: str = "/ws/health", timeout: float = 60
    ) -> Process:
        """Start a server and wait until ``path`` answers 200 on the free port."""
        process = self.start(command, part)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise AssertionError(
                    f"{process.script!r} exited ({process.popen.returncode}):\n{process.output[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + path, timeout=2).status_code == 200:
                    return process
            time.sleep(0.2)
        raise AssertionError(
            f"{process.script!r} did not serve {path} within {timeout} s:\n{process.output[-3000:]}"
        )

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def check_all_ran(self) -> None:
        assert not self.todo, (
            f"{self.test} did not run these commands assigned to it in tests/doc_commands.py: "
            + "; ".join(
                repr(c if p is None else parts_of(c)[p]) for c, p in sorted(self.todo, key=str)
            )
        )
