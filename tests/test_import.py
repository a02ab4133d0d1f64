"""`import peft_footprint` must not import torch, transformers or peft (the core is numpy/pydantic/pyyaml)."""

import json
import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, json, peft_footprint as pf; pf.estimate('meta-llama/Llama-3.1-8B', 'lora');"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'peft', 'bitsandbytes', 'pandas', 'matplotlib') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
