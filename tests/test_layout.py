"""The package layout stays true: imports only go down the stages, only the whisper adapter touches
faster-whisper, nobody reaches into another module's private names, every module says its job.

    entries  ->  service  ->  request / audio / decoding / speakers  ->  the shared floor
       \\-> formats -> request                       decoding/whisper: the faster-whisper adapter

Each rule is checked on the real tree and, so that a broken checker cannot pass, on a small made-up
tree that breaks it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from helpers import ROOT

FLOOR_MODULES = {"config", "errors", "transcript", "stopping", "stages", "languages", "__init__"}
# layer -> the layers its modules may import (a layer may always import itself)
ALLOWED: Dict[str, Set[str]] = {
    "floor": set(),
    "request": {"floor"},
    "audio": {"floor"},
    "formats": {"floor", "request"},
    "adapter": {"floor", "audio", "request"},
    "decoding": {"floor", "request", "audio", "adapter"},
    "speakers": {"floor", "audio"},
    "service": {"floor", "request", "audio", "decoding", "speakers"},
    "live": {"floor", "request", "audio", "decoding", "adapter"},
    "entries": {"floor", "request", "formats", "service", "live"},
    "main": {"floor", "request", "audio", "decoding", "speakers", "formats", "service", "entries"},
}
# outside the adapter, only the model registry may import faster-whisper, and only its public API
PUBLIC_FASTER_WHISPER = {"faster_whisper": {"WhisperModel"}, "faster_whisper.utils": {"available_models", "download_model"}}
MODELS_MODULE = "worker.decoding.models"
MAX_CLASS_LINES = 160


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "floor"  # worker/__init__.py
    if parts[1] == "__main__":
        return "main"
    if parts[1] == "service":
        return "service"
    if len(parts) == 2 and parts[1] in FLOOR_MODULES:
        return "floor"
    if parts[1] == "decoding" and len(parts) > 2 and parts[2] == "whisper":
        return "adapter"
    if parts[1] in ALLOWED:
        return parts[1]
    raise AssertionError(f"{module}: not in any layer; add its package to tests/test_layout.py's ALLOWED")


def imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[Tuple[int, str, List[str]]]:
    """(line, imported module, names taken from it) for every import, nested ones too."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target, [alias.name for alias in node.names]


def python_files(root: Path) -> Iterator[Path]:
    return iter(sorted((root / "worker").rglob("*.py")))


def violations(root: Path) -> List[str]:
    found = []
    for path in python_files(root):
        module = module_name(path, root)
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        where = f"{path.relative_to(root)}"
        layer = layer_of(module)
        if not ast.get_docstring(tree):
            found.append(f"{where}: no docstring saying the module's job")
        worker_modules: Set[str] = set()  # local names bound to worker modules
        for line, target, names in imports(tree, module, path.name == "__init__.py"):
            if target == "worker" or target.startswith("worker."):
                for name in names:
                    candidate = f"{target}.{name}"
                    if _exists(root, candidate):
                        worker_modules.add(name)
                        target_layer = layer_of(candidate)
                    else:
                        target_layer = layer_of(target) if target != "worker" else "floor"
                    if target_layer != layer and target_layer not in ALLOWED[layer]:
                        found.append(f"{where}:{line}: {layer} imports {candidate if _exists(root, candidate) else target} ({target_layer}); "
                                     f"{layer} may import only {sorted(ALLOWED[layer] | {layer})}")
                    if name.startswith("_") and not name.startswith("__"):
                        found.append(f"{where}:{line}: imports the private name {name} from {target}")
                if not names:
                    target_layer = layer_of(target)
                    if target_layer != layer and target_layer not in ALLOWED[layer]:
                        found.append(f"{where}:{line}: {layer} imports {target} ({target_layer})")
            if target.split(".")[0] == "faster_whisper" and layer != "adapter":
                public = PUBLIC_FASTER_WHISPER.get(target, set())
                if module != MODELS_MODULE or not names or not set(names) <= public:
                    found.append(f"{where}:{line}: imports {target} ({', '.join(names) or 'the module'}); "
                                 "only worker/decoding/whisper/ touches faster-whisper")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in worker_modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{where}:{node.lineno}: reaches into {node.value.id}.{node.attr}")
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    found.append(f"{where}:{node.lineno}: class {node.name} is {length} lines (over {MAX_CLASS_LINES}): split its jobs")
    return found


def _exists(root: Path, module: str) -> bool:
    path = root / Path(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_the_worker_keeps_its_layout():
    assert violations(ROOT) == []


def write(root: Path, files: Dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


GOOD = {
    "worker/__init__.py": '"""w"""\n',
    "worker/errors.py": '"""e"""\n',
    "worker/audio/__init__.py": '"""a"""\n',
    "worker/audio/decode.py": '"""d"""\nfrom worker.errors import x\n',
    "worker/decoding/__init__.py": '"""d"""\n',
    "worker/decoding/engine.py": '"""e"""\nfrom worker.audio.decode import y\nfrom worker.decoding.whisper import vad\n',
    "worker/decoding/models.py": '"""m"""\ndef load():\n    from faster_whisper import WhisperModel\n',
    "worker/decoding/whisper/__init__.py": '"""w"""\n',
    "worker/decoding/whisper/vad.py": '"""v"""\nfrom faster_whisper.vad import get_vad_model\n',
    "worker/speakers/__init__.py": '"""s"""\n',
    "worker/speakers/backends.py": '"""b"""\nfrom worker.audio.decode import y\n',
}


@pytest.mark.parametrize("name, text, complaint", [
    ("worker/speakers/backends.py", '"""b"""\nfrom worker.decoding.engine import Engine\n', "speakers imports worker.decoding.engine (decoding)"),
    ("worker/speakers/backends.py", '"""b"""\ndef f():\n    from worker.decoding import engine\n', "speakers imports worker.decoding.engine (decoding)"),
    ("worker/audio/decode.py", '"""d"""\nimport worker.decoding.engine\n', "audio imports worker.decoding.engine"),
    ("worker/speakers/backends.py", '"""b"""\nfrom faster_whisper.vad import get_vad_model\n', "only worker/decoding/whisper/ touches faster-whisper"),
    ("worker/decoding/models.py", '"""m"""\nfrom faster_whisper.transcribe import get_ctranslate2_storage\n', "only worker/decoding/whisper/"),
    ("worker/decoding/engine.py", '"""e"""\nfrom worker.decoding.whisper.vad import _private\n', "private name _private"),
    ("worker/decoding/engine.py", '"""e"""\nfrom worker.decoding.whisper import vad\nvad._clock = 1\n', "reaches into vad._clock"),
    ("worker/decoding/engine.py", "x = 1\n", "no docstring"),
    ("worker/decoding/engine.py", '"""e"""\nclass Big:\n' + "    x = 1\n" * 170, "class Big is 171 lines"),
])
def test_the_checker_catches_each_broken_rule(tmp_path, name, text, complaint):
    root = write(tmp_path, GOOD)
    assert violations(root) == []
    (root / name).write_text(text)
    found = violations(root)
    assert any(complaint in line for line in found), found
