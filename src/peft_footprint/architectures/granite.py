"""GraniteForCausalLM (transformers/models/granite): Llama's modules plus scalar multipliers (embedding,
residual, attention, logits), which add no parameters."""

from .llama import Llama


class Granite(Llama):
    model_type = "granite"
    head_dim_always_in_config = False  # GraniteConfig has no head_dim field
    heads_divide_hidden = False  # (GraniteConfig does not check it)
