"""The project keeps its promises about itself: README commands, CI, settings docs, layering."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from parley.worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None and text.index(block.group(0)) < 200, "the two commands open the README"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_the_two_commands() -> None:
    run, test = readme_commands()
    assert "parley up" in run and "pip install" in run
    assert "pytest" in test and "pip install" in test


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = readme_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`PARLEY_{name.upper()}`" in readme, f"PARLEY_{name.upper()} is missing from the README"


def _imports(path: Path) -> set[str]:
    """The absolute module names ``path`` imports."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files() -> list[Path]:
    return [p for folder in ("api", "worker", "parley", "tests", "bench", "docs") for p in (ROOT / folder).rglob("*.py")]


def test_worker_never_imports_api() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "worker").rglob("*.py")
                 if any(name == "parley.api" or name.startswith("parley.api.") for name in _imports(p))]
    assert offenders == []


def test_code_imports_parley_never_the_bare_folders() -> None:
    """``api`` and ``worker`` are folders of the source tree, installed as ``parley.api`` and ``parley.worker``:
    importing them by their folder names would load a second copy of every module (or a bot's own ``api``)."""
    offenders = {str(p.relative_to(ROOT)): sorted(bad) for p in _python_files()
                 if (bad := {n for n in _imports(p) if n.split(".")[0] in ("api", "worker")})}
    assert offenders == {}


def test_redis_keys_are_spelled_only_in_keys_module() -> None:
    pattern = re.compile(r"""["']parley:""")
    offenders = [str(p.relative_to(ROOT)) for p in list((ROOT / "worker").rglob("*.py")) + list(
        (ROOT / "api").rglob("*.py")) if p.name != "keys.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_modules_stay_small() -> None:
    large = {str(p.relative_to(ROOT)): n for p in list((ROOT / "worker").rglob("*.py")) + list(
        (ROOT / "api").rglob("*.py")) if (n := len(p.read_text().splitlines())) > 300}
    assert large == {}


def test_event_schema_file_is_current() -> None:
    import json

    from parley.worker.events.models import json_schema

    assert json.loads((ROOT / "docs" / "events.schema.json").read_text()) == json_schema()


def test_the_package_code_passes_ruff() -> None:
    """api/, worker/ and parley/ pass the project's ruff rules (pyproject.toml), so style drifts are caught here
    rather than piling up."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ruff", "check", "api", "worker", "parley"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]


def test_no_merge_conflict_markers_are_left() -> None:
    """No tracked text file holds a line of a merge conflict (one slipped into the README once)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    marked = []
    for name in files.split():
        path = ROOT / name
        if path.suffix in {".png", ".ico"} or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if any(line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in text.splitlines()):
            marked.append(name)
    assert marked == []
