"""The engine is pure numerical code: nothing in it may import Django."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import recommendations.engine as engine

ENGINE_DIR = Path(engine.__file__).parent


def _engine_modules():
    # imported as a top-level package ("engine") so that the parent Django app's
    # __init__ is not part of what is checked
    return ["engine"] + [f"engine.{m.name}" for m in pkgutil.walk_packages([str(ENGINE_DIR)])]


def test_no_engine_module_imports_django_in_its_source():
    offenders = []
    for path in ENGINE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n == "django" or n.startswith("django.")]
    assert offenders == []


def test_importing_every_engine_module_loads_no_django():
    code = (
        "import importlib, sys\n"
        # only the app folder, last: the cwd entry would let recommendations/selectors.py shadow
        # the standard library's selectors module
        f"sys.path[:] = [p for p in sys.path if p not in ('', '.')] + [{str(ENGINE_DIR.parent)!r}]\n"
        f"for name in {_engine_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ENGINE_DIR.parent, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
