"""Translation of job types into docker jobs: the plug-in protocol, registry and built-ins."""

from .base import Translator
from .registry import TranslatorRegistry, builtin_translators, default_registry
from .translation import Translation, translate_job

__all__ = [
    "Translation",
    "Translator",
    "TranslatorRegistry",
    "builtin_translators",
    "default_registry",
    "translate_job",
]
