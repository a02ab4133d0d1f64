"""The CLI agrees with the API number for number, --json parses everywhere, exit codes are reliable and bad
input never prints a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import peft_footprint as pf
from peft_footprint.cli import main

LLAMA8B = "meta-llama/Llama-3.1-8B"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_estimate_matches_api(capsys):
    data = run_json(capsys, "estimate", LLAMA8B, "--method", "lora", "-m", "r=16", "-m", "target_modules=all-linear",
                    "--batch-size", "4", "--seq-len", "1024", "--gradient-checkpointing", "--optimizer", "adamw_8bit",
                    "--num-tasks", "5", "--hardware", "H100")
    est = pf.estimate(LLAMA8B, {"name": "lora", "r": 16, "target_modules": "all-linear"},
                      {"batch_size": 4, "seq_len": 1024, "gradient_checkpointing": True, "optimizer": "adamw_8bit"},
                      {"num_tasks": 5}, "H100")
    assert data == json.loads(est.to_json())


def test_estimate_text_is_the_summary(capsys):
    code, out, _ = run(capsys, "estimate", LLAMA8B, "--method", "qlora")
    assert code == 0
    assert out.strip() == str(pf.estimate(LLAMA8B, "qlora")).strip()


def test_compare_matches_api(capsys):
    data = run_json(capsys, "compare", LLAMA8B, "--seq-len", "256", "--hardware", "L40S", "--num-tasks", "3")
    comp = pf.compare(LLAMA8B, training={"seq_len": 256}, inference={"num_tasks": 3}, hardware="L40S")
    assert data == json.loads(comp.to_json())
    code, out, _ = run(capsys, "compare", LLAMA8B, "--seq-len", "256", "--hardware", "L40S", "--num-tasks", "3")
    assert out.strip() == str(comp).strip()


def test_compare_selected_methods(capsys):
    data = run_json(capsys, "compare", LLAMA8B, "--method", "full", "--method", "ia3", "--seq-len", "64")
    assert [r["label"] for r in data["rows"]] == ["full", "ia3"]


def test_fit_matches_api(capsys):
    args = ["fit", LLAMA8B, "--method", "qlora", "--seq-len", "2048", "--gradient-checkpointing", "--hardware", "RTX-4090"]
    data = run_json(capsys, *args, "--max-batch-size", "--max-seq-len")
    training = {"seq_len": 2048, "gradient_checkpointing": True}
    report = pf.fit_report(LLAMA8B, "qlora", training, "RTX-4090")
    assert data["fits"] is report.fits and data["required_bytes"] == report.required_bytes
    assert data["capacity_bytes"] == report.capacity_bytes
    assert data["max_batch_size"] == pf.max_batch_size(LLAMA8B, "qlora", training, "RTX-4090")
    assert data["max_seq_len"] == pf.max_seq_len(LLAMA8B, "qlora", {"gradient_checkpointing": True}, "RTX-4090")
    code, out, _ = run(capsys, *args, "--max-batch-size")
    assert code == 0 and "fits" in out and f": {data['max_batch_size']}" in out


def test_fit_recommend(capsys):
    data = run_json(capsys, "fit", LLAMA8B, "--hardware", "A10G", "--seq-len", "512", "--recommend")
    rec = pf.recommend(LLAMA8B, "A10G", {"seq_len": 512})
    assert data["recommend"] == json.loads(rec.to_json())


def test_fit_exit_code(capsys):
    code, out, _ = run(capsys, "fit", LLAMA8B, "--method", "full", "--hardware", "RTX-4090", "--exit-code")
    assert code == 3 and "does NOT fit" in out
    code, _, _ = run(capsys, "fit", LLAMA8B, "--method", "full", "--hardware", "RTX-4090")
    assert code == 0
    code, _, _ = run(capsys, "fit", LLAMA8B, "--method", "qlora", "--hardware", "H100", "--exit-code")
    assert code == 0


def test_scenario_file(tmp_path, capsys):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}))
    (tmp_path / "scenario.yaml").write_text(
        "model: cfg\nmethod: {name: lora, r: 4}\ntraining: {batch_size: 3, seq_len: 77}\n"
        "inference: {num_tasks: 2}\nhardware: T4\n")
    data = run_json(capsys, "estimate", "--config", str(tmp_path / "scenario.yaml"))
    est = pf.estimate(str(tmp_path / "cfg"), {"name": "lora", "r": 4}, {"batch_size": 3, "seq_len": 77}, {"num_tasks": 2}, "T4")
    assert data == json.loads(est.to_json())
    # flags override the scenario
    data = run_json(capsys, "estimate", "--config", str(tmp_path / "scenario.yaml"), "--seq-len", "10")
    est = pf.estimate(str(tmp_path / "cfg"), {"name": "lora", "r": 4}, {"batch_size": 3, "seq_len": 10}, {"num_tasks": 2}, "T4")
    assert data == json.loads(est.to_json())
    data = run_json(capsys, "fit", "--config", str(tmp_path / "scenario.yaml"))
    assert data["hardware"] == "T4" and data["fits"] is True


def test_method_config(tmp_path, capsys):
    cfg = {"peft_type": "IA3", "task_type": "CAUSAL_LM", "target_modules": ["k_proj", "v_proj", "down_proj"],
           "feedforward_modules": ["down_proj"], "inference_mode": True}
    (tmp_path / "adapter_config.json").write_text(json.dumps(cfg))
    data = run_json(capsys, "estimate", LLAMA8B, "--method-config", str(tmp_path / "adapter_config.json"))
    assert data == json.loads(pf.estimate(LLAMA8B, cfg).to_json())
    assert data["method"]["name"] == "ia3"


def test_listings(capsys):
    assert run_json(capsys, "list-models") == pf.list_models()
    assert [m["name"] for m in run_json(capsys, "list-methods")] == pf.METHODS.names()
    hw = run_json(capsys, "list-hardware")
    assert [h["name"] for h in hw] == pf.list_hardware()
    assert all(isinstance(h["memory_bytes"], int) for h in hw)
    code, out, _ = run(capsys, "list-hardware")
    assert code == 0 and "H100-SXM-80GB" in out and "GiB" in out


@pytest.mark.parametrize("argv,needle", [
    (["estimate", LLAMA8B, "--method", "lroa"], "Did you mean 'lora'"),
    (["estimate", "meta-llama/Llama-3.1-8b"], "Did you mean 'meta-llama/Llama-3.1-8B'"),
    (["estimate", LLAMA8B, "--batch-size", "0"], "training.batch_size"),
    (["estimate", LLAMA8B, "-m", "rr=4"], "Did you mean 'r'"),
    (["estimate", LLAMA8B, "-m", "r"], "KEY=VALUE"),
    (["estimate", LLAMA8B, "-t", "seq_length=5"], "training.seq_length"),
    (["estimate", LLAMA8B, "--hardware", "H1000"], "Unknown hardware"),
    (["estimate", "--config", "/nonexistent/scenario.yaml"], "cannot read"),
    (["estimate", LLAMA8B, "--method-config", "/nonexistent/adapter_config.json"], "cannot read"),
    (["estimate"], "no model"),
    (["fit", LLAMA8B], "--hardware"),
    (["compare", "facebook/opt-125m", "--method", "nope"], "Unknown method"),
])
def test_bad_input_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err and err.startswith("error: ")
    assert "Traceback" not in err and out == ""


def test_bad_scenario_key(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("model: meta-llama/Llama-3.1-8B\ntrainig: {seq_len: 4}\n")
    code, _, err = run(capsys, "estimate", "--config", str(tmp_path / "s.yaml"))
    assert code == 2 and "Did you mean 'training'" in err
    (tmp_path / "t.yaml").write_text("model: [unclosed\n")
    code, _, err = run(capsys, "estimate", "--config", str(tmp_path / "t.yaml"))
    assert code == 2 and "not valid YAML" in err


def test_subprocess_exit_codes_no_traceback():
    ok = subprocess.run([sys.executable, "-m", "peft_footprint", "estimate", LLAMA8B, "--method", "full", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["total_params"] == 8_030_261_248
    bad = subprocess.run([sys.executable, "-m", "peft_footprint", "estimate", LLAMA8B, "--method", "lroa"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "Did you mean 'lora'" in bad.stderr
    flag = subprocess.run([sys.executable, "-m", "peft_footprint", "estimate", LLAMA8B, "--no-such-flag"], capture_output=True, text=True)
    assert flag.returncode == 2 and "Traceback" not in flag.stderr and "usage:" in flag.stderr


def test_internal_error_exit_1(monkeypatch, capsys):
    import peft_footprint.api as api

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "estimate", boom)
    code, _, err = run(capsys, "estimate", LLAMA8B)
    assert code == 1 and "RuntimeError: boom" in err and "Traceback" not in err


def test_lora_adapter_config_is_lora(tmp_path, capsys):
    cfg = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]}
    (tmp_path / "adapter_config.json").write_text(json.dumps(cfg))
    data = run_json(capsys, "estimate", LLAMA8B, "--method-config", str(tmp_path / "adapter_config.json"))
    assert data["method"]["name"] == "lora"
    assert data == json.loads(pf.estimate(LLAMA8B, {"name": "lora", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]}).to_json())
