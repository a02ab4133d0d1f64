"""Locate (or build) the isolated virtualenv that has AdapterHub's ``adapters`` library.

``adapters`` 1.3.0 pins transformers 4.x, which conflicts with the main test environment, so
the ground-truth script ``measure_adapters.py`` runs in its own interpreter:

1. ``$PF_ADAPTERS_PYTHON`` if set (must be an interpreter with ``adapters`` importable);
2. otherwise ``<repo>/.venv-adapters/`` (gitignored via ``.venv*/``), built on first use with
   ``python -m venv`` + ``pip install`` of the pins below. The build takes an exclusive file
   lock (``<repo>/.cache/pf-adapters-venv.lock``) so concurrent pytest workers don't race, and is
   marked complete with a stamp file holding the pins, so a half-built venv is rebuilt.

``torch==2.13.0`` resolves to the CPU wheel on the default index here; never install an
unpinned ``torch`` (it pulls a multi-GB CUDA build). Set ``PF_ADAPTERS_TORCH_INDEX`` (e.g.
``https://download.pytorch.org/whl/cpu``) to force a CPU-only index on machines where the
default index would give the CUDA build.

Command line: ``python tests/harness/adapters_env.py`` builds/prints the interpreter path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

# What `pip install torch==2.13.0 adapters==1.3.0` resolved to (2026, Python 3.11); pinned so
# that the ground truth does not drift. transformers 4.57.6 is what adapters 1.3.0 resolves to
# (adapters 1.3.0 requires transformers~=4.57.6).
PINS = (
    "torch==2.13.0",
    "adapters==1.3.0",
    "transformers==4.57.6",
    "huggingface-hub==0.36.2",
    "tokenizers==0.22.2",
    "safetensors==0.8.0",
)

ENV_VAR = "PF_ADAPTERS_PYTHON"
_REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
VENV_DIR = os.path.join(_REPO, ".venv-adapters")
# lock lives in the gitignored /.cache/ so it never shows up in `git status`
LOCK_PATH = os.path.join(_REPO, ".cache", "pf-adapters-venv.lock")
STAMP_NAME = "pf-adapters-stamp.json"
_CHECK = "import adapters, torch, transformers; print(adapters.__version__, torch.__version__, transformers.__version__)"


def _log(msg: str) -> None:
    print(f"[adapters_env] {msg}", file=sys.stderr, flush=True)


def _venv_python(venv: str) -> str:
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def _works(python: str) -> bool:
    if not os.path.exists(python):
        return False
    try:
        r = subprocess.run([python, "-c", _CHECK], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def _stamp_ok(venv: str) -> bool:
    try:
        with open(os.path.join(venv, STAMP_NAME)) as f:
            return tuple(json.load(f).get("pins", ())) == PINS
    except (OSError, ValueError):
        return False


class _FileLock:
    """Exclusive advisory lock on a file (fcntl on POSIX, msvcrt on Windows)."""

    def __init__(self, path: str, timeout: float = 3600.0):
        self.path, self.timeout, self.fh = path, timeout, None

    def __enter__(self):
        self.fh = open(self.path, "a+")
        start, warned = time.time(), False
        while True:
            try:
                if os.name == "nt":
                    import msvcrt

                    msvcrt.locking(self.fh.fileno(), msvcrt.LK_NBLCK, 1)
                else:
                    import fcntl

                    fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError:
                if time.time() - start > self.timeout:
                    raise TimeoutError(f"could not lock {self.path} within {self.timeout}s")
                if not warned:
                    _log(f"waiting for another process building the venv (lock {self.path})")
                    warned = True
                time.sleep(2.0)

    def __exit__(self, *exc):
        try:
            if os.name == "nt":
                import msvcrt

                self.fh.seek(0)
                msvcrt.locking(self.fh.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)
        finally:
            self.fh.close()


def _run(cmd, **kw) -> None:
    _log("$ " + " ".join(cmd))
    # stream pip's output to stderr so CI logs show progress
    subprocess.run(cmd, check=True, stdout=sys.stderr, stderr=sys.stderr, **kw)


def _build(venv: str, base_python: str) -> None:
    t0 = time.time()
    if os.path.exists(venv):
        _log(f"removing incomplete venv {venv}")
        shutil.rmtree(venv)
    _log(f"creating venv {venv} with {base_python}")
    _run([base_python, "-m", "venv", venv])
    py = _venv_python(venv)
    pip = [py, "-m", "pip", "--disable-pip-version-check", "install", "--progress-bar", "off"]
    env = dict(os.environ)
    env.pop("PIP_USER", None)
    _run(pip + ["--upgrade", "pip"], env=env)
    torch_pin = [p for p in PINS if p.startswith("torch==")]
    rest = [p for p in PINS if not p.startswith("torch==")]
    index = os.environ.get("PF_ADAPTERS_TORCH_INDEX")
    # torch first (optionally from a CPU-only index), then the rest against it
    _run(pip + (["--index-url", index, "--extra-index-url", "https://pypi.org/simple"] if index else []) + torch_pin,
         env=env)
    _run(pip + rest + torch_pin, env=env)
    r = subprocess.run([py, "-c", _CHECK], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"adapters venv built but import fails:\n{r.stderr[-3000:]}")
    freeze = subprocess.run([py, "-m", "pip", "freeze"], capture_output=True, text=True).stdout.split()
    with open(os.path.join(venv, STAMP_NAME), "w") as f:
        json.dump({"pins": list(PINS), "versions": r.stdout.strip(), "freeze": freeze,
                   "build_seconds": round(time.time() - t0, 1)}, f, indent=1)
    _log(f"adapters venv ready in {time.time() - t0:.0f}s: {r.stdout.strip()}")


def adapters_python(venv: str | None = None, base_python: str | None = None) -> str:
    """Path of a python interpreter with ``adapters`` importable (building the venv if needed)."""
    env_py = os.environ.get(ENV_VAR)
    if env_py:
        if not _works(env_py):
            raise RuntimeError(f"${ENV_VAR}={env_py!r} cannot import adapters/torch/transformers")
        return env_py
    venv = venv or VENV_DIR
    py = _venv_python(venv)
    if _stamp_ok(venv) and os.path.exists(py):
        return py
    lock = LOCK_PATH if venv == VENV_DIR else venv.rstrip("/\\") + ".lock"
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with _FileLock(lock):
        if _stamp_ok(venv) and _works(py):  # another worker finished it while we waited
            return py
        _build(venv, base_python or sys.executable)
    return py


if __name__ == "__main__":
    print(adapters_python())
