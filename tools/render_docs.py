"""Regenerate the comparison table and the three plots of docs/usage.md (run by hand after estimator changes):

    python tools/render_docs.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import peft_footprint as pf  # noqa: E402
from peft_footprint.plot import plot_memory_vs_seq_len, plot_storage  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B"


def main() -> None:
    comparison = pf.compare(MODEL, training={"batch_size": 4, "seq_len": 1024}, inference={"num_tasks": 10},
                            hardware="H100-SXM-80GB")
    usage = ROOT / "docs" / "usage.md"
    text = usage.read_text()
    text = re.sub(r"```text\n.*?```", lambda _: "```text\n" + str(comparison) + "\n```", text, count=1, flags=re.S)
    usage.write_text(text)
    readme = ROOT / "README.md"
    readme.write_text(re.sub(r"```text\n.*?```", lambda _: "```text\n" + str(comparison) + "\n```", readme.read_text(), count=1, flags=re.S))
    img = ROOT / "docs" / "img"
    comparison.plot().savefig(img / "llama-3.1-8b-memory.png", dpi=110, bbox_inches="tight")
    plot_memory_vs_seq_len(MODEL, training={"batch_size": 1}, hardware="A100-SXM-40GB").savefig(
        img / "llama-3.1-8b-seq-len.png", dpi=110, bbox_inches="tight")
    plot_storage(MODEL).savefig(img / "llama-3.1-8b-storage.png", dpi=110, bbox_inches="tight")
    print(comparison)


if __name__ == "__main__":
    main()
