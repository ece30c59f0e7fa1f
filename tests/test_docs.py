"""The README's Python runs as written, and every glossary link points at an entry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GLOSSARY = ROOT / "docs" / "GLOSSARY.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def test_the_readme_has_python_blocks_and_a_first_block_without_local_paths():
    text = README.read_text()
    assert len(python_blocks(text)) >= 3
    first = re.search(r"^```sh\n(.*?)^```", text, re.DOTALL | re.MULTILINE).group(1)
    commands = [line.split("#")[0].strip() for line in first.splitlines() if line.strip()]
    assert commands == ["make test", "make train"]


@pytest.mark.mnist
def test_the_readme_python_blocks_run_as_written(mnist_dir, tmp_path):
    """Every ```python block, in order, in one interpreter, in an empty folder."""
    pytest.importorskip("sklearn")
    pytest.importorskip("onnxruntime")
    script = tmp_path / "readme.py"
    script.write_text("\n\n".join(python_blocks(README.read_text())))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "DIGITNET_DATA": str(mnist_dir),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(script)], cwd=work, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = float(result.stdout.splitlines()[0])
    assert 0.93 <= accuracy <= 0.97, result.stdout  # "about 0.95"
    for made in ("models/notebook.safetensors", "models/notebook.onnx", "my_digit.png",
                 "models/grid.safetensors"):
        assert (work / made).is_file(), made


def glossary_anchors() -> set[str]:
    text = GLOSSARY.read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', text))
    # headings are anchors too, as GitHub renders them
    anchors |= {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    return anchors


def test_every_glossary_link_points_at_an_entry():
    anchors = glossary_anchors()
    sources = [README, *sorted((ROOT / "src" / "digitnet").rglob("*.py"))]
    links = 0
    for path in sources:
        for anchor in re.findall(r"GLOSSARY\.md#([a-z0-9-]+)", path.read_text()):
            assert anchor in anchors, f"{path.name}: #{anchor} is not in the glossary"
            links += 1
    assert links >= 5


def test_the_help_texts_link_the_glossary():
    from typer.testing import CliRunner

    from digitnet.cli import app

    for command in ("train", "evaluate", "predict", "explain", "report", "robustness", "info"):
        result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0
        assert "docs/GLOSSARY.md" in result.stdout, command
