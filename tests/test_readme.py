"""The README is executable documentation: every code example in it runs here.

Blocks are run in README order in one scratch directory, so a later example can use files an
earlier one wrote:

- ```` ```python ```` blocks run as scripts;
- ```` ```<lang> file=PATH ```` blocks are written to PATH (plugin modules, pyproject files);
- ```` ```bash ```` blocks run line by line. ``pip install`` there is redirected into a scratch
  ``--target`` directory (through pip's environment variables) so the test never changes the
  environment it runs in.

The quick-start block is the one exception: it creates the environment the tests run in, so
instead of running it here we check that ``.ci/run`` runs exactly those two commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(?P<lang>\w+)?(?P<attrs>[^\n]*)\n(?P<body>.*?)^```\s*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    index: int
    lang: str
    file: str | None
    body: str
    quickstart: bool

    @property
    def id(self) -> str:
        return f"{self.index:02d}-{self.file or self.lang}"


def _blocks() -> list[Block]:
    blocks = []
    for i, m in enumerate(FENCE.finditer(README.read_text(encoding="utf-8"))):
        attrs = m["attrs"].split()
        file = next((a.split("=", 1)[1] for a in attrs if a.startswith("file=")), None)
        blocks.append(Block(i, m["lang"] or "", file, m["body"], "quickstart" in attrs))
    return blocks


BLOCKS = _blocks()


def test_quickstart_matches_ci() -> None:
    quick = [b for b in BLOCKS if b.quickstart]
    assert len(quick) == 1, "the README needs exactly one ```bash quickstart block"
    commands = [line for line in quick[0].body.splitlines() if line.strip()]
    assert len(commands) == 2, "the quick start is exactly two commands: set up, then test"
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in ci_lines, f".ci/run must run the README command {command!r} verbatim"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


def _env(scratch: Path) -> dict[str, str]:
    site = scratch / "site"
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = f"{site / 'bin'}{os.pathsep}{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(site)
    env["PIP_TARGET"] = str(site)
    env["PIP_NO_DEPS"] = "1"
    env["PIP_NO_INDEX"] = "1"
    env["PIP_NO_BUILD_ISOLATION"] = "0"
    env["PIP_UPGRADE"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.quickstart], ids=lambda b: b.id)
def test_readme_block(block: Block, scratch: Path) -> None:
    env = _env(scratch)
    if block.file:
        target = scratch / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.body, encoding="utf-8")
        return
    if block.lang == "python":
        cmd = [sys.executable, "-c", block.body]
    elif block.lang in ("bash", "sh", "console"):
        cmd = ["bash", "-euo", "pipefail", "-c", block.body]
    else:
        pytest.skip(f"{block.lang or 'plain'} block is output, not code")
    result = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"README block failed:\n{block.body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
