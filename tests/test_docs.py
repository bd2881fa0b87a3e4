"""The docs site's promises: every shell command it shows runs (or is run by .ci/run), the
tutorial's and quick start's files work as the pages say, the configuration reference
lists every key, and nginx with the configuration the nginx page shows carries WebSocket
connections, resumes and tokens as it says."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import msgspec
import pytest
import yaml
from websockets.sync.client import connect

from sanic_realtime.config import RealtimeConfig, parse_duration

from . import doc_commands as dc
from .processes import Cluster
from .redis_support import delete_prefix, new_prefix, redis_url
from .scale_app import ADMIN_TOKEN
from .tokens import token

ROOT = dc.ROOT

# --------------------------------------------------------------------------- the check


def _ci_lines() -> set[str]:
    """Every line of .ci/run, and every ``&&`` part of each."""
    lines = {line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()}
    return lines | {part for line in lines for part in dc.parts_of(line)}


def _check_install(command: str) -> str | None:
    args = shlex.split(command)
    assert args[:2] == ["pip", "install"], command
    meta = importlib.metadata.metadata("sanic-realtime")
    extras_known = set(meta.get_all("Provides-Extra") or [])
    for spec in args[2:]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", spec)
        if not m or m.group(1) != meta["Name"]:
            return f"installs {spec!r}, not {meta['Name']}"
        missing = {e.strip() for e in (m.group(2) or "").split(",") if e.strip()} - extras_known
        if missing:
            return f"names extras {sorted(missing)} that pyproject.toml does not define"
    return None


def _check_bench_args(command: str) -> str | None:
    """The script's own argparse parses the exact arguments; the benchmark does not run."""
    args = shlex.split(command)
    script = ROOT / args[1]
    probe = (
        "import argparse, runpy, sys\n"
        "parse = argparse.ArgumentParser.parse_args\n"
        "def parse_only(self, args=None, namespace=None):\n"
        "    parse(self, args, namespace)\n"
        "    raise SystemExit('parsed')\n"
        "argparse.ArgumentParser.parse_args = parse_only\n"
        f"sys.path.insert(0, {str(script.parent)!r})\n"
        f"sys.argv = {[str(script), *args[2:]]!r}\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if done.returncode == 1 and done.stderr.strip().endswith("parsed"):
        return None
    return f"{args[1]}'s argument parser refused it ({done.returncode}): {done.stderr[-500:]}"


def _check(command: str, kind: dc.Kind, part: str | None = None) -> str | None:
    """Why ``kind`` does not hold for ``command``, or None."""
    text = command if part is None else part
    if isinstance(kind, dc.InCI):
        if text == ".ci/run":
            return None if os.access(ROOT / ".ci/run", os.X_OK) else ".ci/run is not executable"
        return None if text in _ci_lines() else "registered as InCI(), but .ci/run lacks this line"
    if isinstance(kind, dc.Install):
        return _check_install(text)
    if isinstance(kind, dc.BenchArgs):
        return _check_bench_args(text)
    if isinstance(kind, dc.Test):
        if not callable(globals().get(kind.test)):
            return f"registered to {kind.test}, which tests/test_docs.py does not define"
        return None
    assert isinstance(kind, dc.Parts)
    parts = dc.parts_of(command)
    if len(parts) != len(kind.parts):
        return f"has {len(parts)} '&&' parts, registered with {len(kind.parts)}"
    for text_part, part_kind in zip(parts, kind.parts, strict=True):
        if problem := _check(command, part_kind, text_part):
            return f"part {text_part!r}: {problem}"
    return None


def test_every_doc_command_is_exercised() -> None:
    """Each command of a shell block in docs/, README.md or DEVELOPERS.md is registered in
    tests/doc_commands.py, and its registration holds (the test exists, .ci/run has the
    line, the extras exist, the benchmark accepts the arguments)."""
    found = dc.all_commands()
    problems = [
        f"- {', '.join(sorted(set(files)))}: {command!r} is not exercised. Register it in "
        "tests/doc_commands.py COMMANDS: Test('<test in tests/test_docs.py that runs it>'), "
        "InCI() if .ci/run runs this exact line, Install() for a pip install from PyPI, "
        "BenchArgs() for a bench/ script, Parts((...)) for an '&&' chain."
        for command, files in found.items()
        if command not in dc.COMMANDS
    ]
    problems += [
        f"- {command!r} is registered in tests/doc_commands.py but no page shows it: remove it"
        for command in dc.COMMANDS
        if command not in found
    ]
    problems += [
        f"- {', '.join(sorted(set(found[command])))}: {command!r} {problem}"
        for command, kind in dc.COMMANDS.items()
        if command in found and (problem := _check(command, kind))
    ]
    assert not problems, "Commands in the docs:\n" + "\n".join(problems)


def test_command_collection(tmp_path: Path) -> None:
    """The collector reads sh/bash/console blocks, joins continued lines, drops comments
    and console output, resolves snippets (whole files and sections), and ignores other
    languages."""
    script = tmp_path / "run.sh"
    script.write_text("make all\n# --8<-- [start:two]\nmake two\n# --8<-- [end:two]\n")
    text = (
        "```sh\n# a comment\nmake a \\\n  b   # note\n\necho '#not a comment'\n```\n"
        "```python\nprint('no')\n```\n"
        "```console\n$ ls -l\ntotal 0\n```\n"
        f'```bash\n--8<-- "{script}"\n```\n'
        f'  ```shell\n  --8<-- "{script}:two"\n  ```\n'
    )
    assert dc.commands_in(text) == [
        "make a \\\n  b",
        "echo '#not a comment'",
        "ls -l",
        "make all",
        "make two",
        "make two",
    ]


# --------------------------------------------------------------------------- config reference


def _load(name: str) -> ModuleType:
    """A module of docs/hooks/, which is not a package."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / f"docs/hooks/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_hook() -> ModuleType:
    return _load("config_reference")


def _rows(markdown: str) -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in markdown.splitlines():
        m = re.match(r"^\| `([^`]+)` \| (.*?) \| (.*?) \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return rows


def _walk(cls: type[msgspec.Struct], path: str) -> list[tuple[str, msgspec.structs.FieldInfo]]:
    """Every field of every Struct reachable from ``cls``, found independently of the
    hook: through Optional, dict values and lists."""
    out = []
    for f in msgspec.structs.fields(cls):
        out.append((f"{path}.{f.encode_name}", f))
        info = msgspec.inspect.type_info(f.type)
        stack: list[tuple[Any, str]] = [(info, f"{path}.{f.encode_name}")]
        while stack:
            t, p = stack.pop()
            if isinstance(t, msgspec.inspect.Metadata):
                stack.append((t.type, p))
            elif isinstance(t, msgspec.inspect.UnionType):
                stack += [(u, p) for u in t.types]
            elif isinstance(t, msgspec.inspect.DictType):
                key = f.encode_name[:-1] if f.encode_name.endswith("s") else f.encode_name
                stack.append((t.value_type, f"{p}.<{key}>"))
            elif isinstance(t, msgspec.inspect.ListType):
                stack.append((t.item_type, f"{p}[i]"))
            elif isinstance(t, msgspec.inspect.StructType):
                out += _walk(t.cls, p)
    return out


def _decode_default(cell: str, field: msgspec.structs.FieldInfo) -> Any:
    def hook(tp: type, value: Any) -> Any:
        if tp.__name__ == "Duration":
            return parse_duration(value)
        raise NotImplementedError

    text = cell.strip("`")
    return msgspec.convert(yaml.safe_load(text), type=field.type, dec_hook=hook, strict=True)


def test_config_reference_lists_every_field_with_its_default() -> None:
    """Every field of every config Struct reachable from RealtimeConfig has a row, and the
    default it shows, read back as YAML, is the field's default."""
    rows = _rows(_load_hook().render())
    fields = _walk(RealtimeConfig, "realtime")
    assert len(fields) > 40
    for path, f in fields:
        assert path in rows, f"{path} is missing from the configuration reference"
        _, default_cell, _ = rows[path]
        if f.default is not msgspec.NODEFAULT:
            expected = f.default
        elif f.default_factory is not msgspec.NODEFAULT:
            expected = f.default_factory()
        else:
            assert default_cell == "required", path
            continue
        if isinstance(expected, msgspec.Struct) and not default_cell.startswith("`"):
            assert "below" in default_cell, path  # its own keys have rows (checked too)
            continue
        assert _decode_default(default_cell, f) == expected, (path, default_cell)
    assert set(rows) == {path for path, _ in fields}, "rows for keys that do not exist"


def test_config_reference_shows_comments_docstrings_and_new_structs(tmp_path: Path) -> None:
    """``#:`` comments and docstrings reach the page, and a Struct added to the code
    appears without any change to the hook."""
    hook = _load_hook()
    page = hook.render()
    assert "How long a graceful shutdown waits" in _rows(page)["realtime.shutdown_timeout"][2]
    assert "How WebSocket clients and admin callers prove who they are" in page
    assert ":class:" not in page and "``" not in page
    module = tmp_path / "newconfig.py"
    module.write_text(
        "import msgspec\n\n"
        "class Extra(msgspec.Struct, kw_only=True):\n"
        '    """A new part of the configuration."""\n\n'
        "    #: How many widgets.\n"
        "    #: Two lines of comment.\n"
        "    widgets: int = 3\n"
        "    name: str | None = None\n\n"
        "class Root(msgspec.Struct, kw_only=True):\n"
        "    extra: Extra = msgspec.field(default_factory=Extra)\n"
        "    extras: dict[str, Extra] = {}\n"
    )
    spec = importlib.util.spec_from_file_location("newconfig", module)
    assert spec is not None and spec.loader is not None
    new = importlib.util.module_from_spec(spec)
    sys.modules["newconfig"] = new
    try:
        spec.loader.exec_module(new)
        rendered = hook.render(new.Root)
    finally:
        del sys.modules["newconfig"]
    rows = _rows(rendered)
    assert rows["realtime.extra.widgets"] == (
        "int",
        "`3`",
        "How many widgets. Two lines of comment.",
    )
    assert rows["realtime.extras.<extra>.name"][:2] == ("string or null", "`null`")
    assert "A new part of the configuration." in rendered


def test_rst_docstrings_become_markdown() -> None:
    """The griffe extension turns roles and literal blocks into Markdown."""
    module = _load("rst_docstrings")
    text = "Use :class:`~a.b.Realtime` and :meth:`publish`::\n\n    x = 1\n\nAfter."
    assert module.rst_to_markdown(text) == (
        "Use `Realtime` and `publish`:\n\n```python\nx = 1\n```\n\nAfter."
    )
    tree = "The hierarchy::\n\n    A\n    └── B\n"
    assert "```text\nA\n└── B\n```" in module.rst_to_markdown(tree)


# --------------------------------------------------------------------------- shown code


#: The directories of tested files that the pages show; each file is shown by some block.
SHOWN_FILES = ("docs/quickstart", "docs/tutorial", "docs/how-to/redis", "docs/how-to/nginx")


def test_doc_code_blocks_match_their_sources() -> None:
    """Every block after ``<!-- from: path:section -->`` in docs/ is that tested file (or
    section) exactly, no page keeps a pymdownx.snippets include line (GitHub shows it
    raw), and every file of the tested directories is shown by some block."""
    sync = _load("sync_includes")
    problems = sync.check()
    assert not problems, "Code blocks of the docs:\n" + "\n".join(f"- {p}" for p in problems)
    shown = {
        block.source.partition(":")[0]
        for page in sync.pages()
        for block in sync.blocks(page.read_text(encoding="utf-8"))
    }
    files = {
        str(path.relative_to(ROOT))
        for directory in SHOWN_FILES
        for path in (ROOT / directory).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert files <= shown, f"tested files no page shows: {sorted(files - shown)}"


def test_sync_includes_reports_and_rewrites(tmp_path: Path) -> None:
    """The check names the page, the block and its first differing line (changed, missing
    or extra lines, a missing section or file, a comment without a block, an include line
    left over); the rewrite makes every block its source again, markers left out."""
    sync = _load("sync_includes")
    (tmp_path / "docs").mkdir()
    (tmp_path / "src.py").write_text(
        "import os\n# --8<-- [start:main]\ndef main():\n    # --8<-- [start:inner]\n"
        "    return 1\n    # --8<-- [end:inner]\n# --8<-- [end:main]\n"
    )
    page = tmp_path / "docs/page.md"
    page.write_text(
        "# Page\n\n<!-- from: src.py:main -->\n```python\ndef main():\n    return 2\n```\n\n"
        "- a list item:\n\n    <!-- from: src.py -->\n    ```python\n    import os\n    ```\n\n"
        "<!-- from: src.py:inner -->\n```python\n    return 1\n```\n"
    )
    assert sync.check(root=tmp_path) == [
        "docs/page.md: block 1 (line 3, from src.py:main): line 2 of the block is "
        "'    return 2', src.py:main has '    return 1'. Run python docs/hooks/sync_includes.py",
        "docs/page.md: block 2 (line 11, from src.py): the block ends before line 2, src.py "
        "has 'def main():'. Run python docs/hooks/sync_includes.py",
    ]
    text = sync.synced(page.read_text(), tmp_path)
    assert "    ```python\n    import os\n    def main():\n        return 1\n    ```" in text
    assert "```python\ndef main():\n    return 1\n```" in text and "8<" not in text
    page.write_text(text)
    assert sync.check(root=tmp_path) == []

    extra = "<!-- from: src.py:inner -->\n```python\n    return 1\nprint()\n```\n"
    assert sync.problems(extra, "p.md", tmp_path) == [
        "p.md: block 1 (line 1, from src.py:inner): line 2 of the block is 'print()', "
        "src.py:inner ends before it. Run python docs/hooks/sync_includes.py"
    ]
    missing = "<!-- from: src.py:gone -->\n```\n```\n<!-- from: nope.py -->\n```\n```\n"
    assert sync.problems(missing, "p.md", tmp_path) == [
        "p.md: block 1 (line 1, from src.py:gone): src.py:gone: the section [start:gone] is "
        "not there in src.py. Run python docs/hooks/sync_includes.py",
        "p.md: block 2 (line 4, from nope.py): nope.py: no file nope.py. "
        "Run python docs/hooks/sync_includes.py",
    ]
    assert sync.problems("<!-- from: src.py -->\ntext\n", "p.md", tmp_path) == [
        "p.md: line 1 (from src.py): the next line must open a fenced block"
    ]
    (problem,) = sync.problems('```python\n--8<-- "src.py:main"\n```\n', "p.md", tmp_path)
    assert problem.startswith("p.md: line 2: '--8<-- \"src.py:main\"' is a pymdownx.snippets")


def test_key_names_get_break_points_after_dots_only() -> None:
    """The key_breaks hook marks a table cell or heading that is one key name, with a
    <wbr> after each dot (tests/test_docs_site.py checks the layout in Chromium), and
    leaves other code alone."""
    hook = _load("key_breaks")
    cell = "<td><code>realtime.channels.&lt;channel&gt;.filters</code></td>"
    assert hook.mark_names(cell) == (
        '<td><code class="key-name">realtime.<wbr>channels.<wbr>&lt;channel&gt;.<wbr>filters'
        "</code></td>"
    )
    heading = '<h2 id="realtime-auth"><code>realtime.auth</code><a class="headerlink" href="#">'
    assert '<code class="key-name">realtime.<wbr>auth</code><a' in hook.mark_names(heading)
    assert hook.mark_names("<td><code>max_clients</code></td>") == (
        '<td><code class="key-name">max_clients</code></td>'
    )
    for other in (
        "<td><code>1000</code></td>",
        "<td><code>{messages: 50, per: 1s}</code></td>",
        "<td><code>a</code> or <code>b</code></td>",
        "<p><code>realtime.auth</code></p>",
    ):
        assert hook.mark_names(other) == other


# --------------------------------------------------------------------------- running them


def _copy(src: str, dst: Path) -> Path:
    shutil.copytree(ROOT / src, dst, dirs_exist_ok=True)
    return dst


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s")


def _clients(base: str, headers: dict[str, str] | None = None) -> int:
    stats = httpx.get(f"{base}/admin/ws/stats", headers=headers or {}, timeout=5).json()
    return int(stats["total_clients"])


def test_quickstart_commands(tmp_path: Path) -> None:
    """The quick start as its page tells it (the info entry reaches nobody, the error
    one the tail), then the clients, configuration and protocol pages' commands against
    the same app."""
    run = dc.Runner("test_quickstart_commands", _copy("docs/quickstart", tmp_path))
    qs = "docs/quickstart.md"
    try:
        run.serve("sanic app:app --port 8000")
        warn = run.start(
            "sanic-realtime tail http://127.0.0.1:8000 --channel logs --filter level=warn"
        )
        _wait(lambda: _clients(run.base) == 1, 20, "subscribed tail")
        info = run.run(dc_cmd(qs, "cache warm"))
        error = run.run(dc_cmd(qs, "db down"))
        assert re.fullmatch(r'\{"id":"\w+:1","recipients":0\}', info.strip()), info
        assert re.fullmatch(r'\{"id":"\w+:2","recipients":1\}', error.strip()), error
        warn.wait_for(lambda out: "db down" in out, 10, "event")
        assert "cache warm" not in warn.output

        # clients.md: two more tails, then a publish through the admin route.
        errors = run.start(
            "sanic-realtime tail http://127.0.0.1:8000 --channel logs --filter level=error"
        )
        jq = run.start(
            "sanic-realtime tail http://127.0.0.1:8000 -c logs --json"
            " | jq --unbuffered -r '.data.message'"
        )
        _wait(lambda: _clients(run.base) == 3, 20, "three tails")
        published = run.run(dc_cmd("docs/clients.md", "sanic-realtime publish"))
        assert re.fullmatch(r"published \w+:3 to logs: 3 recipients\n", published), published
        errors.wait_for(lambda out: "db down" in out, 10, "event")
        jq.wait_for(lambda out: "db down" in out.splitlines(), 10, "jq's line")

        # configuration.md: the file checks out.
        loaded = run.run(dc_cmd("docs/configuration.md", "load_yaml"))
        assert loaded.startswith("RealtimeConfig(") and "'logs'" in loaded, loaded

        # protocol.md: the open admin route (auth none, no admin.token).
        with connect(f"ws://127.0.0.1:{run.port}/ws/stats") as ws:
            assert json.loads(ws.recv(5))["type"] == "connection_established"
            broadcast = run.run(dc_cmd("docs/protocol.md", '"channel": "stats"'))
            assert json.loads(broadcast)["success"] is True
            event = json.loads(ws.recv(5))
            assert (event["type"], event["data"]) == ("stats_update", {"cpu": 0.5})
    finally:
        run.close()
    run.check_all_ran()


def readme_file(name: str) -> str:
    """The fenced block that follows "`name`:" in the README's Quick start."""
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"`{re.escape(name)}`[^\n]*\n(?:[^\n]+\n)*\n```\w+\n(.*?)```", text, re.S)
    assert found, f"README.md shows no block for {name}"
    return found[1]


def test_readme_quickstart(tmp_path: Path) -> None:
    """The README's Quick start, typed in as it reads: the client prints the event."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    run = dc.Runner("test_readme_quickstart", tmp_path)
    readme = "README.md"
    try:
        run.run(dc_cmd(readme, "mkdir quickstart"))
        here = run.cwd = tmp_path / "quickstart"
        assert here.is_dir()
        for name in ("realtime.yaml", "app.py", "client.py"):
            text = readme_file(name).replace("127.0.0.1:8000", f"127.0.0.1:{run.port}")
            (here / name).write_text(text)
        run.serve(dc_cmd(readme, "../.venv/bin/sanic app:app"))
        client = run.start(dc_cmd(readme, "python client.py"))
        _wait(lambda: _clients(run.base) == 1, 20, "the client")
        published = run.run(dc_cmd(readme, "curl -s -X POST"))
        assert re.fullmatch(r'\{"id":"\w+:1","recipients":1\}', published.strip()), published
        line = "log_update {'level': 'error', 'component': 'db', 'message': 'db down'}"
        client.wait_for(lambda out: line in out, 15, "the client's line")
        assert f"the client prints\n`{line}`" in (ROOT / readme).read_text()
    finally:
        run.close()
    run.check_all_ran()


def dc_cmd(page: str, needle: str) -> str:
    """The one command of ``page`` that contains ``needle`` (as the page shows it)."""
    found = [c for c in dc.commands_in((ROOT / page).read_text()) if needle in c]
    assert len(found) == 1, (page, needle, found)
    return found[0]


def test_tutorial_commands(tmp_path: Path) -> None:
    """The tutorial end to end: its app, tail and Python subscriber with their filters,
    its curl commands, the page with /ws/client.js, and a resume with ``since``."""
    page = "docs/tutorial.md"
    run = dc.Runner("test_tutorial_commands", _copy("docs/tutorial", tmp_path))
    try:
        run.serve(dc_cmd(page, "sanic orders:app"))
        tail = run.start(dc_cmd(page, "sanic-realtime tail"))
        watcher = run.start(dc_cmd(page, "watch_orders.py"))
        _wait(lambda: _clients(run.base) == 2, 20, "tail and subscriber")

        created = json.loads(run.run(dc_cmd(page, "-X POST")))
        assert created == {
            "id": 1,
            "customer": "acme",
            "item": "bolts",
            "priority": "urgent",
            "status": "placed",
        }
        assert json.loads(run.run(dc_cmd(page, "-X PATCH")))["status"] == "shipped"
        # Not in the page: a normal order, which the filters keep from both.
        httpx.post(
            f"{run.base}/orders", json={"customer": "zed", "item": "nuts"}
        ).raise_for_status()
        # and a high one, which reaches the tail but not the subscriber (urgent only).
        high = {"customer": "kim", "item": "gears", "priority": "high"}
        httpx.post(f"{run.base}/orders", json=high).raise_for_status()

        tail.wait_for(lambda out: "gears" in out, 10, "the high order")
        assert tail.output.count("bolts") == 2 and "order.updated" in tail.output
        assert "nuts" not in tail.output
        lines = watcher.wait_for(lambda out: "shipped" in out, 10, "the update").splitlines()
        assert [line.split()[1:] for line in lines] == [
            ["order.created", "1", "bolts", "placed"],
            ["order.updated", "1", "bolts", "shipped"],
        ]
        time.sleep(0.5)
        assert "gears" not in watcher.output and "nuts" not in watcher.output

        # The page, and the browser client it imports.
        html = httpx.get(run.base + "/").text
        assert 'import { RealtimeClient } from "/ws/client.js";' in html
        assert "RealtimeClient" in httpx.get(run.base + "/ws/client.js").text

        # Step 7: reconnect with the last id seen; exactly the missed high orders follow.
        url = f"ws://127.0.0.1:{run.port}/ws/orders?priority=high"
        with connect(url) as ws:
            assert json.loads(ws.recv(5))["type"] == "connection_established"
            httpx.post(f"{run.base}/orders", json={**high, "item": "cogs"}).raise_for_status()
            last = json.loads(ws.recv(5))
            assert last["data"]["item"] == "cogs"
        httpx.post(f"{run.base}/orders", json={**high, "item": "missed"}).raise_for_status()
        httpx.post(f"{run.base}/orders", json={**high, "priority": "low"}).raise_for_status()
        httpx.patch(f"{run.base}/orders/1", json={"status": "delivered"}).raise_for_status()
        with connect(f"{url}&since={last['id']}") as ws:
            hello = json.loads(ws.recv(5))
            assert hello["data"]["recovered"] == {"orders": True}
            replayed = [json.loads(ws.recv(5)) for _ in range(2)]
            assert [(e["type"], e["data"]["item"]) for e in replayed] == [
                ("order.created", "missed"),
                ("order.updated", "bolts"),
            ]
            with pytest.raises(TimeoutError):
                ws.recv(0.5)
    finally:
        run.close()
    run.check_all_ran()


def test_demo_commands() -> None:
    """The README's and demo page's commands against the demo (started as the README
    says, with REALTIME_ADMIN_TOKEN=change-me, on a free port)."""
    run = dc.Runner("test_demo_commands", ROOT)
    run.env.pop("REALTIME_ADMIN_TOKEN", None)
    try:
        # The README: "start the demo with REALTIME_ADMIN_TOKEN=change-me"; the later
        # commands get it from the README's export line.
        run.env["REALTIME_ADMIN_TOKEN"] = "change-me"
        run.serve(dc.DEMO, part=2)
        del run.env["REALTIME_ADMIN_TOKEN"]
        tails = {
            command: run.start(command)
            for command, _ in dc.assigned("test_demo_commands")
            if "sanic-realtime tail" in command
        }
        assert len(tails) == 4
        # Subscribed before the publish below, or they could not see it.
        for process in tails.values():
            process.wait_for(lambda out: "* connected (" in out, 30, "the connection")
        run.run("export REALTIME_ADMIN_TOKEN=change-me")
        assert run.env["REALTIME_ADMIN_TOKEN"] == "change-me"
        stats = json.loads(run.run(dc_cmd("README.md", "/admin/ws/stats")))
        assert stats["workers"] == 1 and "total_clients" in stats
        published = run.run(dc_cmd("README.md", "sanic-realtime publish"))
        assert re.fullmatch(r"published \w+:\d+ to logs: \d+ recipients\n", published), published
        task = json.loads(run.run(dc_cmd("docs/demo.md", "/api/tasks")))
        assert task["task"]["name"] == "backfill"
        for command, process in tails.items():
            if "--json" in command:
                process.wait_for(lambda out: '"type":"stats_update"' in out, 30, "stats")
                assert '"window":"5m"' in process.output
            elif "stats" in command:
                process.wait_for(lambda out: "stats_update" in out, 30, "stats")
            else:  # the published error reaches both log tails (warn and above, error)
                process.wait_for(lambda out: "db down" in out, 30, "the published event")
        top_of_the_demo(run.take(dc_cmd("README.md", "sanic-realtime top")))
    finally:
        run.close()
    run.check_all_ran()


def top_of_the_demo(script: str) -> None:
    """The README's ``sanic-realtime top`` in a real terminal (tmux): the demo's channels
    with their figures and events, then ``q``."""
    from .test_top import Terminal, ensure_tmux

    ensure_tmux()
    terminal = Terminal(width=150, height=45)
    try:
        terminal.start(f"cd {shlex.quote(str(ROOT))} && {script}")

        async def watch() -> None:
            await terminal.shows("● connected", "reconnects 0", "q Quit")
            await terminal.shows(" logs ", " stats ", " tasks ", listed="log_update")
            terminal.keys("q")
            await terminal.shows("EXITED=0")

        asyncio.run(watch())
    finally:
        terminal.close()


def test_docs_serve() -> None:
    """The README's `mkdocs serve` serves the site (with the generated reference)."""
    run = dc.Runner("test_docs_serve", ROOT)
    try:
        run.serve(".venv/bin/mkdocs serve --dev-addr 127.0.0.1:8000", path="/", timeout=90)
        home = httpx.get(run.base + "/").text
        assert "<title>sanic-realtime</title>" in home
        # Offline: no web fonts from a CDN (theme font: false).
        assert "fonts.googleapis" not in home and "fonts.gstatic" not in home
        # docs/hooks/key_breaks.py puts a <wbr> after each dot of a key name.
        keys = httpx.get(run.base + "/reference/config-keys/").text.replace("<wbr>", "")
        assert "realtime.channels.&lt;channel&gt;.filters.&lt;filter&gt;.op" in keys
    finally:
        run.close()
    run.check_all_ran()


def test_redis_workers_command(tmp_path: Path) -> None:
    """The Redis page's command: four workers on Redis serve one app; events published
    through any worker reach clients of every worker, and the stats sum all four."""
    url = redis_url()
    prefix = new_prefix()
    workdir = tmp_path / "app"
    workdir.mkdir()
    shutil.copy(ROOT / "docs/quickstart/app.py", workdir)
    text = (ROOT / "docs/how-to/redis/realtime.yaml").read_text()
    assert "prefix: ops " in text
    # The page's file with a key prefix of the test's own, so runs never share channels.
    (workdir / "realtime.yaml").write_text(text.replace("prefix: ops ", f"prefix: {prefix} "))
    run = dc.Runner("test_redis_workers_command", workdir, redis_url=url)
    try:
        run.serve(dc.REDIS_WORKERS, timeout=90)
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(connect(f"ws://127.0.0.1:{run.port}/ws/logs?level=warn"))
                for _ in range(8)
            ]
            for ws in clients:
                assert json.loads(ws.recv(5))["type"] == "connection_established"
            _wait(
                lambda: httpx.get(run.base + "/admin/ws/stats").json()["workers"] == 4,
                20,
                "four workers in the stats",
            )
            _wait(lambda: _clients(run.base) == 8, 20, "eight clients summed")
            stats = httpx.get(run.base + "/admin/ws/stats").json()
            assert len(stats["by_worker"]) == 4
            for n in range(6):  # each POST lands on whichever worker the kernel picks
                body = {"level": "error", "message": f"m{n}"}
                httpx.post(run.base + "/logs", json=body, timeout=5).raise_for_status()
            for ws in clients:
                got = [json.loads(ws.recv(10))["data"]["message"] for _ in range(6)]
                assert got == [f"m{n}" for n in range(6)]
    finally:
        run.close()
        asyncio.run(delete_prefix(url, prefix))
    run.check_all_ran()


def test_protocol_commands(tmp_path: Path) -> None:
    """protocol.md's ticket and targeted-broadcast commands against a server with JWT
    auth (tests/scale_app.py) and a static admin token."""
    carol = token("carol", role="ops")
    run = dc.Runner(
        "test_protocol_commands",
        ROOT,
        env={"TOKEN": carol, "REALTIME_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    server = dc.Process(
        f"exec {shlex.quote(sys.executable)} -m sanic tests.scale_app:create_app --factory"
        f" --single-process --host 127.0.0.1 --port {run.port}",
        ROOT,
        run.env,
    )
    run.processes.append(server)
    try:
        _wait(lambda: _healthy(run.base), 30, "server")
        ticket = json.loads(run.run(dc_cmd("docs/protocol.md", "/ws/ticket")))
        assert ticket["expires_in"] == 30.0
        headers = {"Authorization": f"Bearer {carol}"}
        with connect(f"ws://127.0.0.1:{run.port}/ws/logs", additional_headers=headers) as ws:
            assert json.loads(ws.recv(5))["data"]["user_id"] == "carol"
            reply = json.loads(run.run(dc_cmd("docs/protocol.md", '"user_id": "carol"')))
            assert reply["success"] is True and reply["recipients"] == 1
            event = json.loads(ws.recv(5))
            assert (event["type"], event["data"]) == ("notice", {"text": "hi"})
        with connect(f"ws://127.0.0.1:{run.port}/ws/logs?ticket={ticket['ticket']}") as ws:
            assert json.loads(ws.recv(5))["data"]["user_id"] == "carol"
    finally:
        run.close()
    run.check_all_ran()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/ws/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- nginx

REQUIRE_NGINX = os.environ.get("REALTIME_REQUIRE_NGINX") == "1"


def _nginx() -> str:
    """The nginx binary; installs Debian's package when missing (as the browser tests do
    for Chromium), skips if that fails, unless REALTIME_REQUIRE_NGINX=1 (.ci/run)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None and shutil.which("apt-get"):
        print(
            "\n[tests] nginx is missing: running `apt-get install -y nginx` for the reverse-proxy "
            "test of docs/how-to/nginx.md...",
            file=sys.__stderr__,
            flush=True,
        )
        subprocess.run(["apt-get", "install", "-y", "nginx"], capture_output=True, timeout=300)
        found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        message = "nginx is not installed and apt-get install -y nginx failed"
        if REQUIRE_NGINX:
            pytest.fail(f"REALTIME_REQUIRE_NGINX=1 but {message}")
        pytest.skip(message)
    return found


async def test_nginx_config_of_the_docs(tmp_path: Path) -> None:
    """nginx with docs/how-to/nginx/realtime.conf (addresses, ports and the log path
    changed) in front of two Sanic instances sharing Redis: the upgrade, an event
    published on either instance, a resume with since, a ?token= that stays out of
    nginx's access log, and 404 on the admin routes."""
    nginx = await asyncio.to_thread(_nginx)
    cluster = Cluster(redis_url(), new_prefix())
    a = await cluster.start()
    b = await cluster.start()
    port = dc.free_port()
    conf = (ROOT / "docs/how-to/nginx/realtime.conf").read_text()
    changes = {
        "server 10.0.0.11:8000;": f"server 127.0.0.1:{a.port};",
        "server 10.0.0.12:8000;": f"server 127.0.0.1:{b.port};",
        "listen 80;": f"listen 127.0.0.1:{port};",
        "/var/log/nginx/realtime.access.log": str(tmp_path / "access.log"),
    }
    for old, new in changes.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    (tmp_path / "realtime.conf").write_text(conf)
    temp = "".join(
        f"    {name}_temp_path {tmp_path / name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n{temp}    access_log off;\n    include {tmp_path / 'realtime.conf'};\n}}\n"
    )
    checked = await asyncio.to_thread(
        subprocess.run,
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    proxy = dc.Process(
        f"exec {nginx} -p {tmp_path} -c {tmp_path / 'nginx.conf'}", tmp_path, dict(os.environ)
    )
    secret = token("alice", role="admin")
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        await asyncio.to_thread(_wait, lambda: _healthy(base), 20, "nginx")
        url = f"ws://127.0.0.1:{port}/ws/logs?token={secret}"

        def session() -> None:
            with connect(url) as ws:
                hello = json.loads(ws.recv(5))
                assert hello["data"]["user_id"] == "alice"
                ids = []
                for n, server in enumerate((a, b)):  # published on each instance
                    body = {"channel": "logs", "type": "log_update", "data": {"n": n}}
                    direct = f"http://127.0.0.1:{server.port}/admin/ws/broadcast"
                    httpx.post(direct, json=body, headers=admin).raise_for_status()
                    event = json.loads(ws.recv(5))
                    assert event["data"] == {"n": n}
                    ids.append(event["id"])
            for n in (2, 3):  # missed while away
                body = {"channel": "logs", "type": "log_update", "data": {"n": n}}
                direct = f"http://127.0.0.1:{a.port}/admin/ws/broadcast"
                httpx.post(direct, json=body, headers=admin).raise_for_status()
            with connect(f"{url}&since={ids[-1]}") as ws:
                assert json.loads(ws.recv(5))["data"]["recovered"] == {"logs": True}
                assert [json.loads(ws.recv(5))["data"]["n"] for _ in range(2)] == [2, 3]
            assert httpx.get(base + "/admin/ws/stats", headers=admin).status_code == 404
            assert httpx.get(base + "/ws/client.js").status_code == 200

        await asyncio.to_thread(session)
        await asyncio.sleep(0.5)  # nginx writes the access log line when a connection ends
        log = (tmp_path / "access.log").read_text()
        assert log.count('"GET /ws/logs HTTP/1.1" 101') == 2, log
        assert secret not in log and "token=" not in log, log
    finally:
        proxy.stop()
        for server in cluster.started:
            await server.stop()
        await delete_prefix(cluster.redis_url, cluster.prefix)
