"""Recordings kept on disk between processes.

A structure's recorded pass (trace.py; activations.replayed) lived in the process that made it: every fresh
process paid the full pass again at a structure's first call (about 5 ms) and its recording at the second
(about 11 ms). With this cache a recording is written to disk when it is made, and a later process that meets
the same structure reads it (about a millisecond) instead of running the pass. The policy is the process's,
counted on this machine: a structure's first call runs the plain pass and leaves a mark (an empty file), the
next call -- in this process or a later one -- records it and writes the recording, every later one reads it.

What is kept is the same object the process keeps -- the compiled tape, its leaves' getters, the config fields it
read, its output names -- and it is used the same way: its guards are checked against each new config, so a
loaded recording answers only where it answers in the process that made it. A recording belongs to the code that
made it: the cache's directory is named by a digest of the package's version, the Python version and every
source file's name, size and modification time (the rule Python's own bytecode cache follows), so editing or
upgrading the package starts a new directory (the four most recently used are kept). A file that cannot be read
(truncated, from another format, written by something else) is a miss. Reading admits only the types a
recording is made of: nothing else in a file can run.

Where: ``$PEFT_FOOTPRINT_CACHE`` (a directory, or ``off``), else ``$XDG_CACHE_HOME/peft-footprint``, else
``~/.cache/peft-footprint``; :func:`configure` sets it for the process. A directory that cannot be written turns
the cache off for the process, silently: the estimate is the same, only slower.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

__all__ = ["clear", "configure", "directory", "info"]

FORMAT = 2  # the layout of a cache file (a zlib-compressed pickle); a change starts a new directory
_KEEP = 4  # version directories kept (the most recently used)
_MAX_FILES = 10_000  # files per kind in one version directory (about 100 MB at most); beyond, nothing more is written
_OFF = {"", "0", "off", "false", "no", "none"}

_state: dict[str, Any] = {"dir": None, "resolved": False, "written": {}}


def configure(path: str | os.PathLike | None | bool = None) -> Path | None:
    """Set where recordings are kept for this process: a directory, ``False`` (off), or ``None`` (the default:
    ``$PEFT_FOOTPRINT_CACHE``, ``$XDG_CACHE_HOME/peft-footprint``, ``~/.cache/peft-footprint``). Returns the
    version directory in use (None when off)."""
    _state["resolved"], _state["dir"], _state["written"] = False, None, {}
    if path is False:
        _state["resolved"] = True
        return None
    if path is not None and path is not True:
        _state["base"] = Path(path)
    else:
        _state.pop("base", None)
    return directory()


def directory() -> Path | None:
    """The version directory recordings are read from and written to (made on first use), or None when the cache
    is off or cannot be written."""
    if _state["resolved"]:
        return _state["dir"]
    _state["resolved"] = True
    base = _state.get("base") or _default_base()
    if base is None:
        return None
    try:
        here = base / f"v{FORMAT}-{_code_digest()}"
        if not here.is_dir():
            here.mkdir(parents=True, exist_ok=True)
            _prune(base, here)
        if not os.access(here, os.W_OK | os.R_OK | os.X_OK):
            return None
        os.utime(here)  # (most recently used)
    except OSError:
        return None
    _state["dir"], _state["str"] = here, str(here)
    return here


def clear() -> None:
    """Remove every recording kept on disk (all versions) under the configured base directory."""
    base = _state.get("base") or _default_base()
    if base is not None and base.is_dir():
        for d in _versions(base):
            shutil.rmtree(d, ignore_errors=True)
    _state["resolved"], _state["dir"], _state["written"] = False, None, {}


def info() -> dict:
    """Where the cache is, and how many recordings (and bytes) this version's directory holds."""
    here = directory()
    if here is None:
        return {"directory": None, "files": 0, "bytes": 0, "versions": 0}
    files = [p for p in here.glob("*/*.pkl") if p.is_file()]
    versions = len(_versions(here.parent))
    return {"directory": str(here), "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "versions": versions}


def _default_base() -> Path | None:
    env = os.environ.get("PEFT_FOOTPRINT_CACHE")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    try:
        root = Path(xdg) if xdg else Path.home() / ".cache"
    except RuntimeError:  # no home directory
        return None
    return root / "peft-footprint"


def _code_digest() -> str:
    """The package's version, the Python version and each source file's path, size and mtime, digested."""
    from . import __version__

    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256(f"{__version__}|{sys.version_info[:3]}|{FORMAT}".encode())
    for root, dirs, files in sorted(os.walk(pkg)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".yaml")):
                st = os.stat(os.path.join(root, name))
                h.update(f"|{os.path.relpath(os.path.join(root, name), pkg)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _prune(base: Path, keep: Path) -> None:
    """Leave the ``_KEEP`` most recently used version directories."""
    dirs = sorted((d for d in _versions(base) if d != keep), key=lambda d: d.stat().st_mtime, reverse=True)
    for d in dirs[_KEEP - 1:]:
        shutil.rmtree(d, ignore_errors=True)


def _versions(base: Path) -> list[Path]:
    """The version directories under ``base`` (``v<format>-<digest>``)."""
    return [d for d in base.iterdir() if d.is_dir() and d.name.startswith("v")]


def _file(kind: str, key: tuple) -> tuple[str, str] | None:
    """The file of ``key`` of ``kind``, and the key as stored in it (its repr)."""
    here = directory()
    if here is None:
        return None
    r = repr(key)
    return os.path.join(_state["str"], kind, hashlib.sha256(r.encode()).hexdigest()[:32] + ".pkl"), r


def load(kind: str, key: tuple) -> list | None:
    """The recordings kept for ``key`` of ``kind``, or None."""
    where = _file(kind, key)
    if where is None:
        return None
    try:
        with open(where[0], "rb") as f:
            data = f.read()
    except OSError:
        return None
    if not data:
        return []  # the mark of a structure computed once (:func:`mark`)
    try:
        stored_key, recordings = _Reader(io.BytesIO(zlib.decompress(data))).load()
    except Exception:  # noqa: BLE001 -- whatever a foreign or damaged file raises, it is a miss
        return None
    if stored_key != where[1] or type(recordings) is not list:
        return None
    return recordings


def mark(kind: str, key: tuple) -> None:
    """Leave the mark of a structure computed once on this machine: an empty file (:func:`load` reads it as no
    recordings), made only where nothing is yet."""
    where = _file(kind, key)
    if where is None:
        return
    try:
        if _room(kind, where[0]):
            with open(where[0], "xb"):
                pass
            _state["written"][kind] += 1
    except OSError:
        return


def save(kind: str, key: tuple, recordings: list) -> None:
    """Keep ``recordings`` for ``key`` of ``kind`` (atomically: a reader sees the old file or the new one)."""
    where = _file(kind, key)
    if where is None:
        return
    try:
        if not _room(kind, where[0]):
            return
        data = zlib.compress(pickle.dumps((where[1], recordings), protocol=pickle.HIGHEST_PROTOCOL), 6)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(where[0]), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, where[0])
        except BaseException:
            os.unlink(tmp)
            raise
        _state["written"][kind] += 1
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        return  # (not writable, or a recording holding something that does not pickle: it stays in memory)


def _room(kind: str, path: str) -> bool:
    """Whether ``kind``'s folder (made the first time) may take another file: fewer than ``_MAX_FILES``."""
    written = _state["written"]
    if kind not in written:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        written[kind] = sum(1 for _ in os.scandir(folder))
    return written[kind] < _MAX_FILES


def data(name: str, make) -> Any:
    """``make()``, kept on disk under ``name`` (plain data only: dicts, lists, strings, numbers), so that a later
    process reads it instead of making it again (the bundled presets: parsing their YAML costs about 15 ms)."""
    key = ("data", name)
    hit = load("data", key)
    if type(hit) is list and len(hit) == 1:
        return hit[0]
    value = make()
    save("data", key, [value])
    return value


# what a recording is made of: anything else in a file is refused
_OPERATORS = {"add", "sub", "mul", "floordiv", "mod", "eq", "ne", "lt", "le", "gt", "ge", "itemgetter"}
_ALLOWED = {
    "builtins": {"UserWarning"},
    "operator": _OPERATORS,
    "_operator": _OPERATORS,
    "peft_footprint.trace": {"_rebuild", "_One", "_neg", "_first", "_sum_of"},
    "peft_footprint.activations": {"_Recording", "_MISSING", "_PRESENT"},
    "peft_footprint.errors": {"PeftFootprintWarning"},
}


class _Reader(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a recording")
