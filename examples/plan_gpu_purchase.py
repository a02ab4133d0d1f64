"""Plan a GPU purchase: for one model and training setup, which GPUs fit each method, and the largest batch.

Run: python examples/plan_gpu_purchase.py [MODEL] [SEQ_LEN]
"""

import sys

import peft_footprint as pf
from peft_footprint.units import fmt_bytes

model = sys.argv[1] if len(sys.argv) > 1 else "meta-llama/Llama-3.1-8B"
seq_len = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
gpus = ["RTX-4090", "L4", "A10G", "L40S", "A100-SXM-40GB", "A100-SXM-80GB", "H100-SXM-80GB", "H200-SXM-141GB"]
methods = {
    "full": "full",
    "full + 8-bit AdamW + ckpt": ("full", {"optimizer": "adamw_8bit", "gradient_checkpointing": True}),
    "LoRA r=16": ({"name": "lora", "r": 16, "target_modules": "all-linear"}, {}),
    "LoRA r=16 + ckpt": ({"name": "lora", "r": 16, "target_modules": "all-linear"}, {"gradient_checkpointing": True}),
    "QLoRA r=16 + ckpt": ({"name": "qlora", "r": 16, "target_modules": "all-linear"}, {"gradient_checkpointing": True}),
}

print(f"{model}, seq_len {seq_len}, bf16: largest batch size that fits (0 = not even batch 1)\n")
width = max(len(g) for g in gpus)
print(" " * width + "  " + "  ".join(f"{m:>26}" for m in methods))
for gpu in gpus:
    cells = []
    for label, spec in methods.items():
        method, extra = (spec, {}) if isinstance(spec, str) else spec
        training = {"seq_len": seq_len, **extra}
        b = pf.max_batch_size(model, method, training, gpu)
        cells.append(f"{b:>26}")
    print(f"{gpu:<{width}}  " + "  ".join(cells))

# the cheapest GPU that fits QLoRA at batch 8, with the explanation
for gpu in gpus:
    report = pf.fit_report(model, {"name": "qlora", "r": 16, "target_modules": "all-linear"},
                           {"batch_size": 8, "seq_len": seq_len, "gradient_checkpointing": True}, gpu)
    if report:
        print(f"\nFirst GPU in the list that fits QLoRA at batch 8: {gpu}")
        print(report)
        break

# what fits on a 24 GB card, least memory first
print()
rec = pf.recommend(model, "RTX-4090", {"seq_len": seq_len})
print(rec)
if rec.best:
    print(f"\nbest: {rec.best['method']} with {rec.best['optimizer']}, gradient checkpointing "
          f"{'on' if rec.best['gradient_checkpointing'] else 'off'}: {fmt_bytes(rec.best['required_bytes'])}")
