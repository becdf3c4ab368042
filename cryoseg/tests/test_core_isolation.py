"""cryoseg.core must stay usable without Scipion: no pyworkflow, pwem or tomo import anywhere in it."""
import ast
import pathlib
import subprocess
import sys

CORE = pathlib.Path(__file__).resolve().parents[1] / 'core'
FORBIDDEN = {'pyworkflow', 'pwem', 'tomo'}


def _imported_roots(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split('.')[0]


def test_core_sources_import_no_scipion_module():
    offenders = {str(p.relative_to(CORE)): sorted(FORBIDDEN & set(_imported_roots(p)))
                 for p in CORE.rglob('*.py')}
    assert not {k: v for k, v in offenders.items() if v}


def test_core_package_loads_without_scipion_installed():
    """Load cryoseg.core as a top-level package with Scipion imports blocked."""
    code = (
        "import sys, importlib.util\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {sorted(FORBIDDEN)!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"spec = importlib.util.spec_from_file_location('core', {str(CORE / '__init__.py')!r},"
        f" submodule_search_locations=[{str(CORE)!r}])\n"
        "core = importlib.util.module_from_spec(spec); sys.modules['core'] = core\n"
        "spec.loader.exec_module(core)\n"
        "import pkgutil\n"
        "for info in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('core.' + info.name)\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'
