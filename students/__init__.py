"""Student networks: the paper's MobileNet v1 (any alpha, any resolution) or any timm model by name.

Importing this package registers `mobilenet_v1*` in timm's registry.
"""
from . import registry  # noqa: F401  (registers the models with timm)
from .factory import create_student, load_student, save_student
from .mobilenetv1 import MobileNetV1

__all__ = ["MobileNetV1", "create_student", "load_student", "save_student"]
