"""Compare every fine-tuning method on one model: memory, storage, and whether it fits on a GPU.

Run: python examples/compare_methods.py [MODEL] [GPU]
"""

import sys

import peft_footprint as pf

model = sys.argv[1] if len(sys.argv) > 1 else "meta-llama/Llama-3.1-8B"
gpu = sys.argv[2] if len(sys.argv) > 2 else "H100-SXM-80GB"

comparison = pf.compare(
    model,
    training={"batch_size": 4, "seq_len": 1024, "dtype": "bf16", "optimizer": "adamw"},
    inference={"num_tasks": 10},  # storage for 10 task-specific adaptations served from one base
    hardware=gpu,
)
print(comparison)

# the same numbers as data: one row per method (integers are bytes unless named otherwise)
rows = comparison.to_dict()["rows"]
cheapest = min((r for r in rows if not r["skipped"]), key=lambda r: r["values"]["peak_bytes"])
print(f"\nLeast training memory: {cheapest['label']} ({cheapest['values']['peak_bytes'] / 2**30:.2f} GiB peak allocated)")

try:  # optional extras: pandas and matplotlib
    df = comparison.to_pandas()
    print("\nas a pandas DataFrame (GiB):")
    print((df[["weights_bytes", "optimizer_bytes", "activations_bytes", "peak_bytes"]] / 2**30).round(2).to_string())
except ImportError:
    pass
