"""Estimate an existing PEFT adapter: read its adapter_config.json (as `save_pretrained` writes it) and
the base model it names, then print memory and storage. peft itself is not needed.

Run: python examples/estimate_adapter_config.py [path/to/adapter_config.json] [GPU]
"""

import json
import sys
from pathlib import Path

import peft_footprint as pf

path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("adapter_config.json")
gpu = sys.argv[2] if len(sys.argv) > 2 else "A10G"
config = json.loads(path.read_text())
base = config["base_model_name_or_path"]  # a bundled preset, or a local folder with config.json

training = {"batch_size": 2, "seq_len": 1024, "gradient_checkpointing": True}
est = pf.estimate(base, config, training=training, inference={"num_tasks": 20})
print(est)
print()
print(f"adapter checkpoint file (adapter_model.safetensors): {est.storage['checkpoint_file_bytes'] / 2**20:.2f} MiB")
print(f"serving 20 tasks from one base: {est.storage['deploy_bytes_all_tasks'] / 2**30:.2f} GiB of disk")
print()
print(pf.fit_report(base, config, training, gpu))
print(f"largest batch at seq_len 1024 on {gpu}: {pf.max_batch_size(base, config, training, gpu)}")
