"""FLOPs of one forward pass and one training step, as ``torch.utils.flop_counter.FlopCounterMode`` counts them
with eager attention (DESIGN.md section 3), plus ``compute_terms`` (FLOPs, KV cache, latency, step time) for
``estimate()``.

Every matrix multiply counts ``2 * m * n * k``. A pass over ``batch`` sequences of ``seq`` tokens is a polynomial
in five units, so one walk over the modules gives coefficients and any shape is then a few multiplications:

``T``   tokens through the decoder, ``batch * (seq + virtual tokens)`` (linears, lm_head)
``A``   attention pairs, ``batch * S_q * S_k`` (``S_k`` includes prefix tuning's virtual keys)
``R``   rotary positions, ``S_q`` (transformers' rotary embedding is one bmm over position_ids of shape (1, S))
``Bn``  sequences (prompt encoders run on ``batch x num_virtual_tokens`` tokens)
``C``   constant per pass (DoRA's weight norm runs ``lora_B(lora_A(eye(in)))`` on every forward)

Backward: a frozen weight gets no weight-gradient matmul, and an input gradient is computed only where the input
requires grad, which is propagated module by module through the layer (``requires_grad`` follows trainable
weights, biases and norms, LoRA/IA3 deltas, trainable prefixes and prompts). Gradient checkpointing (transformers'
non-reentrant, one checkpoint per decoder layer, early stop on) re-runs each layer's forward in backward up to the
last op that saves a tensor: a layer ending in ``matmul -> residual add`` does not re-run that last matmul.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .dtypes import nbytes

__all__ = ["FlopCoefficients", "flop_coefficients", "forward_flops", "step_flops", "compute_terms"]

UNITS = ("T", "A", "R", "Bn", "C")


@dataclass
class Poly:
    T: int = 0
    A: int = 0
    R: int = 0
    Bn: int = 0
    C: int = 0

    def add(self, unit: str, v: int) -> None:
        setattr(self, unit, getattr(self, unit) + v)

    def __iadd__(self, o: Poly) -> Poly:
        for u in UNITS:
            self.add(u, getattr(o, u))
        return self

    def eval(self, T: int, A: int, R: int, Bn: int) -> int:
        return self.T * T + self.A * A + self.R * R + self.Bn * Bn + self.C


@dataclass
class FlopCoefficients:
    """Coefficients of one pass: forward, backward and checkpoint recomputation, plus the sequence shape rules."""

    forward: Poly = field(default_factory=Poly)
    backward: Poly = field(default_factory=Poly)
    recompute: Poly = field(default_factory=Poly)
    virtual_tokens: int = 0  # added to every sequence (prompt tuning, P-tuning)
    prefix_tokens: int = 0  # added to every key length (prefix tuning)
    rotary_on_virtual: bool = True  # position_ids cover the virtual tokens (prompt tuning) but not the prefix

    def shape_units(self, batch: int, seq: int) -> tuple[int, int, int, int]:
        s = seq + self.virtual_tokens
        return batch * s, batch * s * (s + self.prefix_tokens), s, batch

    def total(self, batch: int, seq: int, *, training: bool) -> int:
        u = self.shape_units(batch, seq)
        if not training:
            return self.forward.eval(*u)
        return self.forward.eval(*u) + self.backward.eval(*u) + self.recompute.eval(*u)


# ---- what a method does to the modules ---------------------------------------------------------------


class _MethodView:
    """The facts about ``method`` that matter for matmuls, resolved once per (model, method)."""

    def __init__(self, spec, method, table):
        from .methods.adapter import Adapter
        from .methods.ia3 import IA3
        from .methods.lora import LoRA

        cfg, layout = spec.cfg, spec.layout
        self.name = method.name
        self.full = method.name == "full"
        self.lora: dict[tuple[str, int | None], int] = {}  # (path, layer or None for outer) -> rank
        self.dora = False
        self.ia3: dict[tuple[str, int | None], str] = {}  # -> "ff" | "out"
        self.bias_mode = "none"
        self.adapter = None
        self.trainable_names = {t.name for t in table.tensors if t.trainable}
        n = layout.num_layers
        if isinstance(method, LoRA):  # QLoRA too
            self.dora = bool(method.use_dora)
            self.bias_mode = method.bias
            for t in method.targets(layout, cfg):
                if t.is_embedding:
                    continue
                r = method.rank_for(t.path)
                if t.in_layer:
                    rel = t.module.path
                    for i in (t.layers if t.layers is not None else range(n)):
                        self.lora[(rel, i)] = r
                else:
                    self.lora[(t.module.path, None)] = r
        elif isinstance(method, IA3):
            for t in table.tensors:
                if not t.name.endswith(".ia3_l"):
                    continue
                kind = "ff" if t.shape[0] == 1 else "out"
                path = t.name[: -len(".ia3_l")]
                if "*" in path:
                    rel = path.split(".*.", 1)[1]
                    for i in (t.layers if t.layers is not None else range(n)):
                        self.ia3[(rel, i)] = kind
                else:
                    self.ia3[(path, None)] = kind
        elif isinstance(method, Adapter):
            self.adapter = method
        self.virtual = method.virtual_tokens()
        self.prefix = method.prefix_tokens()
        self.method = method

    def weight_trainable(self, full_path: str) -> bool:
        if self.full:
            return True
        return f"{full_path}.weight" in self.trainable_names or f"{full_path}.modules_to_save.weight" in self.trainable_names

    def bias_trainable(self, full_path: str, has_bias: bool, lora_here: bool) -> bool:
        if not has_bias:
            return False
        if self.full or self.bias_mode == "all":
            return True
        return self.bias_mode == "lora_only" and lora_here

    def norm_trainable(self, spec, rel: str | None, outer_path: str | None = None) -> bool:
        if self.full:
            return True
        if self.bias_mode != "all":
            return False
        if rel is not None:
            return any(p.path == f"{rel}.bias" for p in spec.layout.layer_params)
        return any(p.path == f"{outer_path}.bias" for p in spec.layout.outer_params)


class _Walker:
    def __init__(self, spec, mv: _MethodView, *, merged: bool, gc: bool):
        self.spec, self.mv, self.merged, self.gc = spec, mv, merged, gc
        self.fwd, self.bwd, self.rec = Poly(), Poly(), Poly()
        self.layer_mm: list[int] = []  # forward T-coefficients of this layer's matmuls, in order
        self.layer_fwd = Poly()

    def _mm(self, unit: str, v: int) -> None:
        self.fwd.add(unit, v)
        self.layer_fwd.add(unit, v)
        if unit == "T":
            self.layer_mm.append(v)

    def linear(self, m, x_rg: bool, layer: int | None, path: str, *, unit: str = "T") -> bool:
        """One nn.Linear / Conv1D (with its LoRA / IA3 wrapper). Returns whether its output requires grad."""
        mv = self.mv
        key = (m.path if layer is not None else path, layer)
        r = mv.lora.get(key)
        ia3 = mv.ia3.get(key)
        w_t = mv.weight_trainable(path)
        b_t = mv.bias_trainable(path, m.bias, r is not None)
        io = 2 * m.in_features * m.out_features
        self._mm(unit, io)
        base_x_rg = x_rg or ia3 == "ff"
        if base_x_rg:
            self.bwd.add(unit, io)
        if w_t:
            self.bwd.add(unit, io)
        if r is not None and not self.merged:
            a, b = 2 * m.in_features * r, 2 * r * m.out_features
            self._mm(unit, a)
            self._mm(unit, b)
            self.bwd.add(unit, a + 2 * b + (a if x_rg else 0))
            if mv.dora:  # get_lora_weight: lora_B(lora_A(eye(in))), detached: forward only
                c = m.in_features * a + m.in_features * b
                self.fwd.add("C", c)
                self.layer_fwd.add("C", c)
                self.layer_mm.append(-1)  # DoRA's output mix saves tensors after the matmuls
        return x_rg or w_t or b_t or (r is not None and not self.merged) or ia3 is not None

    # ---- one decoder layer ----------------------------------------------------------------------
    def layer(self, i: int, h_rg: bool) -> bool:
        spec, mv, cfg = self.spec, self.mv, self.spec.cfg
        layout = spec.layout
        self.layer_mm, self.layer_fwd = [], Poly()
        lin = {m.role: m for m in layout.layer_linears}
        pre = f"{layout.layer_prefix}.{i}."
        norms = [p.path.rsplit(".", 1)[0] for p in layout.layer_params if p.path.endswith(".weight")]
        attn_norm, mlp_norm = norms[0], norms[1]
        x_rg = h_rg or mv.norm_trainable(spec, attn_norm)
        if "qkv" in lin:
            qkv = self.linear(lin["qkv"], x_rg, i, pre + lin["qkv"].path)
            q_rg = k_rg = v_rg = qkv
        else:
            q_rg = self.linear(lin["q"], x_rg, i, pre + lin["q"].path)
            k_rg = self.linear(lin["k"], x_rg, i, pre + lin["k"].path)
            v_rg = self.linear(lin["v"], x_rg, i, pre + lin["v"].path)
        if mv.full and any("q_norm" in p.path for p in layout.layer_params):
            q_rg = k_rg = True
        if self.prefix_active:
            k_rg = v_rg = True
        nh, hd = cfg["num_attention_heads"], cfg["head_dim"]
        att = 2 * nh * hd
        self._mm("A", 2 * att)
        p_rg = q_rg or k_rg
        self.bwd.add("A", att * (int(q_rg) + int(k_rg) + int(p_rg) + int(v_rg)))
        o_rg = self.linear(lin["o"], p_rg or v_rg, i, pre + lin["o"].path)
        attn_out = o_rg or (len(norms) == 4 and mv.norm_trainable(spec, norms[1]))
        if self.mv.adapter is not None and self.mv.adapter.setting("mh_adapter"):
            attn_out = self._adapter(attn_out) or attn_out
        parallel = cfg["model_type"] == "gpt_neox" and cfg.get("use_parallel_residual", True)
        h2 = h_rg or attn_out
        mlp_norm = norms[2] if len(norms) == 4 else mlp_norm
        x_rg = (h_rg if parallel else h2) or mv.norm_trainable(spec, mlp_norm)
        if "gate_up" in lin:
            mid = self.linear(lin["gate_up"], x_rg, i, pre + lin["gate_up"].path)
        elif "gate" in lin:
            g = self.linear(lin["gate"], x_rg, i, pre + lin["gate"].path)
            u = self.linear(lin["up"], x_rg, i, pre + lin["up"].path)
            mid = g or u
        else:
            mid = self.linear(lin["up"], x_rg, i, pre + lin["up"].path)
        out = self.linear(lin["down"], mid, i, pre + lin["down"].path)
        if self.mv.adapter is not None and self.mv.adapter.setting("output_adapter"):
            out = self._adapter(out) or out
        if self.gc:
            rec = Poly(**{u: getattr(self.layer_fwd, u) for u in UNITS})
            if self._ends_in_matmul() and self.layer_mm and self.layer_mm[-1] > 0:
                rec.T -= self.layer_mm[-1]
            self.rec += rec
        return h2 or out

    def _adapter(self, x_rg: bool) -> bool:
        h = self.spec.cfg["hidden_size"]
        d = self.mv.adapter.bottleneck(h)
        self._mm("T", 2 * h * d)
        self._mm("T", 2 * d * h)
        self.bwd.add("T", 2 * h * d * (2 + int(x_rg)) + 2 * d * h * 2)
        return True

    def _ends_in_matmul(self) -> bool:
        """Does the layer's last tensor-saving op come before its last matmul (nothing after it saves)?"""
        cfg = self.spec.cfg
        mt = cfg["model_type"]
        if mt in ("gemma2", "gemma3_text", "olmo2"):  # post-feed-forward RMSNorm saves its input
            return False
        if mt == "gpt2" and (cfg.get("resid_pdrop", 0.1) or 0) > 0:  # training dropout saves its mask
            return False
        if mt == "opt" and (cfg.get("dropout", 0.1) or 0) > 0:
            return False
        if mt == "starcoder2" and (cfg.get("residual_dropout", 0.0) or 0) > 0:
            return False
        if mt == "gpt_neox" and (cfg.get("hidden_dropout", 0.0) or 0) > 0:
            return False
        if mt == "phi3" and (cfg.get("resid_pdrop", 0.0) or 0) > 0:
            return False
        return True

    # ---- the whole model ------------------------------------------------------------------------
    def run(self) -> None:
        spec, mv, cfg = self.spec, self.mv, self.spec.cfg
        layout = spec.layout
        self.prefix_active = mv.prefix > 0 and not self.gc  # transformers drops past_key_values under checkpointing
        self._encoder()
        h_rg = mv.full or mv.virtual > 0 or self.gc  # checkpointing: enable_input_require_grads()
        outer = {m.role: m for m in layout.outer_linears}
        if "project_in" in outer:
            h_rg = self.linear(outer["project_in"], h_rg, None, outer["project_in"].path)
        if cfg["model_type"] not in ("gpt2", "opt"):
            rot_dim = int(cfg["head_dim"] * (cfg.get("partial_rotary_factor") or cfg.get("rotary_pct") or 1.0))
            n_rot = len(set(spec.layer_types)) if cfg["model_type"] == "gemma3_text" else 1
            self.fwd.add("R", 2 * (rot_dim // 2) * n_rot)
        for i in range(layout.num_layers):
            h_rg = self.layer(i, h_rg)
        final_norm = [p.path.rsplit(".", 1)[0] for p in layout.outer_params if p.kind == "norm"]
        if final_norm and mv.norm_trainable(spec, None, final_norm[0]):
            h_rg = True
        if "project_out" in outer:
            h_rg = self.linear(outer["project_out"], h_rg, None, outer["project_out"].path)
        head = outer["lm_head"]
        head_path = layout.input_embedding if head.tied else head.path
        mv_w = mv.weight_trainable(head_path) or mv.weight_trainable(head.path)
        io = 2 * head.in_features * head.out_features
        self.fwd.add("T", io)
        if h_rg:
            self.bwd.add("T", io)
        if mv_w:
            self.bwd.add("T", io)
        r = mv.lora.get((head.path, None))
        if r is not None and not self.merged:
            a, b = 2 * head.in_features * r, 2 * r * head.out_features
            self.fwd.add("T", a + b)
            self.bwd.add("T", a + 2 * b + (a if h_rg else 0))

    def _encoder(self) -> None:
        """Prompt encoders run on batch x num_virtual_tokens tokens, every forward (all trainable)."""
        m = self.mv.method
        name = self.mv.name
        if name == "p_tuning":
            d = m.resolved(self.spec.cfg)[1]
            h = m.encoder_hidden_size or d
            n = m.total_virtual_tokens
            if m.encoder_reparameterization_type == "MLP":
                mats = [(d, h), (h, h), (h, d)]
                f = sum(2 * a * b for a, b in mats)
                self.fwd.add("Bn", n * f)
                self.bwd.add("Bn", 2 * n * f)
            else:  # bidirectional LSTM: input projection over all steps, one hidden matmul per step
                f = 0
                b = 0
                for layer in range(m.encoder_num_layers):
                    inp = d if layer == 0 else 2 * h
                    per_dir = 2 * inp * 4 * h + 2 * h * 4 * h
                    f += 2 * per_dir
                    b += 2 * 2 * per_dir
                mats = [(2 * h, 2 * h), (2 * h, d)]
                mf = sum(2 * a * bb for a, bb in mats)
                self.fwd.add("Bn", n * (f + mf))
                self.bwd.add("Bn", n * (b + 2 * mf))
                self.lstm_hh = (m.encoder_num_layers, h)
        elif name == "prefix_tuning" and m.prefix_projection:
            layers, td, _ = m.resolved(self.spec.cfg)
            ehs = m.encoder_hidden_size or td
            n = m.num_virtual_tokens
            f = 2 * td * ehs + 2 * ehs * layers * 2 * td
            self.fwd.add("Bn", n * f)
            if not self.gc:  # under checkpointing the prefix is dropped: nothing flows back into the encoder
                self.bwd.add("Bn", 2 * n * f)


_COEFFS: dict[tuple, FlopCoefficients] = {}


def flop_coefficients(spec, method, table, *, merged: bool = False, gradient_checkpointing: bool = False) -> FlopCoefficients:
    """Coefficients of forward / backward / recompute FLOPs, cached per (model, method, merged, checkpointing)."""
    key = (id(spec), type(method).__name__, method.model_dump_json(), id(table), merged, gradient_checkpointing)
    hit = _COEFFS.get(key)
    if hit is not None:
        return hit
    mv = _MethodView(spec, method, table)
    w = _Walker(spec, mv, merged=merged, gc=gradient_checkpointing)
    w.run()
    c = FlopCoefficients(w.fwd, w.bwd, w.rec, mv.virtual, mv.prefix if not gradient_checkpointing else 0)
    c.prefix_tokens = mv.prefix
    c.gc_drops_prefix = gradient_checkpointing and mv.prefix > 0
    if len(_COEFFS) > 4096:
        _COEFFS.clear()
    _COEFFS[key] = c
    return c


def forward_flops(spec, method, table, batch: int, seq: int, *, merged: bool | None = None) -> int:
    """FLOPs of one forward pass over ``batch`` x ``seq`` input tokens (eager attention, all positions' logits)."""
    if merged is None:
        merged = bool(getattr(method, "merged", False))
    return flop_coefficients(spec, method, table, merged=merged).total(batch, seq, training=False)


def step_flops(spec, method, table, training) -> int:
    """FLOPs of one training step (forward + backward + checkpoint recomputation) at the training shape."""
    c = flop_coefficients(spec, method, table, gradient_checkpointing=bool(training.gradient_checkpointing))
    if getattr(c, "gc_drops_prefix", False):
        b, s = training.batch_size, training.seq_len
        T, A, R, Bn = b * s, b * s * s, s, b
        total = c.forward.eval(T, A, R, Bn) + c.backward.eval(T, A, R, Bn) + c.recompute.eval(T, A, R, Bn)
        return total * training.gradient_accumulation_steps
    return c.total(training.batch_size, training.seq_len, training=True) * training.gradient_accumulation_steps


def compute_terms(spec, method, table, training, inference, hardware) -> dict[str, Any]:
    from .inference import compute_inference_terms
    from .training_time import training_time_terms

    return {
        "training": training_time_terms(spec, method, table, training, hardware),
        "inference": compute_inference_terms(spec, method, table, training, inference, hardware),
    }
