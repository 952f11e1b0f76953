"""Teachers: any timm classifier, from the hub or a local checkpoint, frozen and self-describing."""
from .ensemble import TeacherEnsemble
from .factory import create_teacher, describe, for_classes, load_state_dict, save_teacher

__all__ = ["TeacherEnsemble", "create_teacher", "describe", "for_classes", "load_state_dict", "save_teacher"]
