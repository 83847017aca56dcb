"""parley installs as one top-level package, ``parley``: its folders ``api/`` and ``worker/`` become
``parley.api`` and ``parley.worker``, so a bot with packages of those names keeps them."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"parley": "parley", "api": "parley.api", "worker": "parley.worker"}


def _declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared() -> None:
    """Packages are listed by hand in pyproject.toml (find would name them api.*); a new subpackage must be too."""
    found = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    assert found == _declared_packages()


@pytest.fixture(scope="module", name="wheel")
def _wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("parley-*.whl"))


@pytest.mark.slow
def test_wheel_has_one_top_level_package_with_its_data(wheel: Path) -> None:
    """Nothing but ``parley`` and its metadata at the top of site-packages; the Lua scripts come along."""
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"parley", wheel.name.split("-")[0] + "-" +
                                                      wheel.name.split("-")[1] + ".dist-info"}
    assert "parley/worker/store/lua/enqueue.lua" in names and "parley/py.typed" in names
    assert "parley/api/routes/turns.py" in names


@pytest.mark.slow
def test_bot_with_its_own_api_and_worker_packages(wheel: Path, tmp_path: Path) -> None:
    """The issue's reproduction: a bot project with ``api/`` and ``worker/`` packages, parley pip-installed into
    a fresh virtualenv; both import, and ``pip show -f`` lists no top-level ``api`` or ``worker``."""
    bot = tmp_path / "bot"
    for package in ("api", "worker"):
        (bot / package).mkdir(parents=True)
        (bot / package / "__init__.py").write_text(f"OWNER = 'bot-{package}'\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=120)
    # parley's dependencies come from the test environment (after the venv's own site-packages, so parley
    # itself is the freshly installed wheel, not this checkout).
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check = ("import api, worker, parley\n"
             "from parley import ParleyClient, AsyncParleyClient, ReplyConsumer, tool, TurnCompleted\n"
             "assert api.OWNER == 'bot-api' and worker.OWNER == 'bot-worker', (api, worker)\n"
             "assert 'site-packages' in parley.__file__, parley.__file__\n"
             "import parley.worker.store.scripts  # the packaged Lua scripts load\n"
             "print('ok')\n")
    result = subprocess.run([str(python), "-c", check], cwd=bot, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    shown = subprocess.run([str(python), "-m", "pip", "show", "-f", "parley"], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    files = [line.strip() for line in shown.split("Files:", 1)[1].splitlines() if line.strip()]
    assert files and not [f for f in files if f.split("/")[0] in ("api", "worker")]
    assert any(f.startswith("parley/api/") for f in files) and any(f.startswith("parley/worker/") for f in files)
