"""Registry of the transformers decoder-only families, one file each."""

from ..registry import Registry
from .base import Architecture, Layout, Linear, Param
from .gemma import Gemma
from .gemma2 import Gemma2
from .gemma3 import Gemma3Text
from .gpt2 import GPT2
from .gpt_neox import GPTNeoX
from .granite import Granite
from .llama import Llama
from .mistral import Mistral
from .olmo2 import Olmo2
from .opt import OPT
from .phi3 import Phi3
from .qwen2 import Qwen2
from .qwen3 import Qwen3
from .starcoder2 import Starcoder2

ARCHITECTURES: Registry[type[Architecture]] = Registry("model_type")
for _cls in (Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma2, Gemma3Text, Phi3, GPT2, GPTNeoX, OPT, Olmo2, Granite, Starcoder2):
    ARCHITECTURES.register(_cls.model_type, _cls)

__all__ = ["ARCHITECTURES", "Architecture", "Layout", "Linear", "Param"]
