"""peft-footprint: what fine-tuning (and then serving) a language model with a PEFT method costs, before you
rent a GPU. ``import peft_footprint as pf; pf.estimate("meta-llama/Llama-3.1-8B", "lora")``."""

from .api import estimate, sweep
from .compare import Comparison, compare
from .architectures import ARCHITECTURES
from .errors import InvalidConfigError, PeftFootprintError, PeftFootprintWarning, UnknownNameError, UnsupportedCombinationError
from .inference import InferenceSpec
from .methods import METHODS, load_method
from .hardware import Hardware, list_hardware, load_hardware
from .model import ModelSpec, list_models
from .planning import FitReport, Recommendation, fit_report, fits, max_batch_size, max_seq_len, recommend
from .result import SCHEMA_VERSION, Estimate
from .training import OPTIMIZERS, TrainingSpec

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "Comparison",
    "Estimate",
    "FitReport",
    "Hardware",
    "InferenceSpec",
    "InvalidConfigError",
    "METHODS",
    "ModelSpec",
    "OPTIMIZERS",
    "PeftFootprintError",
    "PeftFootprintWarning",
    "Recommendation",
    "SCHEMA_VERSION",
    "TrainingSpec",
    "UnknownNameError",
    "UnsupportedCombinationError",
    "compare",
    "estimate",
    "sweep",
    "fit_report",
    "fits",
    "list_hardware",
    "list_models",
    "load_hardware",
    "load_method",
    "max_batch_size",
    "max_seq_len",
    "recommend",
]
