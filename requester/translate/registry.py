"""The registry of translators: built-ins plus the ``shoal.translators`` entry points."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points

from shoal.errors import TranslationError, UnknownJobTypeError

from .base import Translator
from .duckdb import DuckDBTranslator
from .python import PythonTranslator
from .wasm import WasmTranslator

ENTRY_POINT_GROUP = "shoal.translators"


class TranslatorRegistry:
    """Job type → translator; names are case-insensitive and unique."""

    def __init__(self, translators: Iterable[Translator] = ()) -> None:
        self._by_type: dict[str, Translator] = {}
        for translator in translators:
            self.register(translator)

    def register(self, translator: Translator) -> None:
        """Add ``translator``; a second translator for the same job type is an error."""
        if not isinstance(translator, Translator):
            raise TranslationError(f"{translator!r} does not implement the Translator protocol")
        key = translator.job_type.lower()
        if key in self._by_type:
            raise TranslationError(
                f"duplicate translator for job type {key!r}: "
                f"{type(self._by_type[key]).__name__} and {type(translator).__name__}"
            )
        self._by_type[key] = translator

    def get(self, job_type: str) -> Translator:
        """The translator for ``job_type``, or ``UnknownJobTypeError`` listing the known ones."""
        try:
            return self._by_type[job_type.lower()]
        except KeyError:
            raise UnknownJobTypeError(job_type, self.job_types()) from None

    def job_types(self) -> list[str]:
        """Known job types, sorted."""
        return sorted(self._by_type)


def builtin_translators() -> list[Translator]:
    """The translators shipped with Shoal."""
    return [PythonTranslator(), DuckDBTranslator(), WasmTranslator()]


def default_registry() -> TranslatorRegistry:
    """Built-ins, then every translator class named in the entry-point group."""
    registry = TranslatorRegistry(builtin_translators())
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factory = entry.load()
            registry.register(factory())
        except TranslationError:
            raise
        except Exception as error:
            raise TranslationError(
                f"cannot load translator entry point {entry.name!r} ({entry.value}): {error}"
            ) from error
    return registry
