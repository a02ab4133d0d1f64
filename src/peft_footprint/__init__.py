"""peft-footprint: what fine-tuning (and then serving) a language model with a PEFT method costs, before you
rent a GPU. ``import peft_footprint as pf; pf.estimate("meta-llama/Llama-3.1-8B", "lora")``."""

from .api import estimate
from .architectures import ARCHITECTURES
from .errors import InvalidConfigError, PeftFootprintError, UnknownNameError, UnsupportedCombinationError
from .inference import InferenceSpec
from .methods import METHODS, load_method
from .model import ModelSpec, list_models
from .result import SCHEMA_VERSION, Estimate
from .training import OPTIMIZERS, TrainingSpec

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "Estimate",
    "InferenceSpec",
    "InvalidConfigError",
    "METHODS",
    "ModelSpec",
    "OPTIMIZERS",
    "PeftFootprintError",
    "SCHEMA_VERSION",
    "TrainingSpec",
    "UnknownNameError",
    "UnsupportedCombinationError",
    "estimate",
    "list_models",
    "load_method",
]
