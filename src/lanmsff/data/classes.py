"""Expression vocabularies of the datasets and the table that maps one onto another (cross-dataset tests).

Every class name is mapped to one canonical emotion:

=============  ==========  =========  =========  ============  ===========================
canonical      KDEF        FER-2013   FERPlus    RaFD          RAF-DB, AffectNet
=============  ==========  =========  =========  ============  ===========================
anger          angry       angry      anger      angry         anger
contempt       -           -          contempt   contemptuous  contempt (AffectNet)
disgust        disgusted   disgust    disgust    disgusted     disgust
fear           afraid      fear       fear       fearful       fear
happiness      happy       happy      happiness  happy         happiness
neutral        neutral     neutral    neutral    neutral       neutral
sadness        sad         sad        sadness    sad           sadness
surprise       surprised   surprise   surprise   surprised     surprise
=============  ==========  =========  =========  ============  ===========================

A model trained on one vocabulary is tested on another over the classes both have (the *shared*
classes): test images whose class the model does not know are left out (and counted), and the
model's prediction is the most probable of the shared classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CANONICAL = {
    "anger": ("angry", "anger"),
    "contempt": ("contempt", "contemptuous"),
    "disgust": ("disgusted", "disgust"),
    "fear": ("afraid", "fear", "fearful"),
    "happiness": ("happy", "happiness"),
    "neutral": ("neutral",),
    "sadness": ("sad", "sadness"),
    "surprise": ("surprised", "surprise"),
}
_TO_CANONICAL = {alias: name for name, aliases in CANONICAL.items() for alias in aliases}


def canonical(name: str) -> str | None:
    """The canonical emotion of a class name (any dataset's spelling), or ``None`` if unknown."""
    return _TO_CANONICAL.get(name.lower())


@dataclass(frozen=True)
class ClassMapping:
    """How a model's classes meet a dataset's classes.

    Attributes:
        shared: canonical names both have, in the model's class order.
        model_index / data_index: index of each shared class in the model's / the data's class list.
        unmapped_data: data classes with no counterpart in the model (their images are left out).
        unmapped_model: model classes with no counterpart in the data (never predicted).
    """

    shared: tuple[str, ...]
    model_index: tuple[int, ...]
    data_index: tuple[int, ...]
    unmapped_data: tuple[str, ...]
    unmapped_model: tuple[str, ...]

    @property
    def identity(self) -> bool:
        """The two vocabularies are the same classes in the same order."""
        return not self.unmapped_data and not self.unmapped_model and self.model_index == self.data_index

    def describe(self) -> dict[str, list]:
        return {
            "shared": list(self.shared),
            "unmapped_data_classes": list(self.unmapped_data),
            "unmapped_model_classes": list(self.unmapped_model),
        }


def map_classes(model_classes: Sequence[str], data_classes: Sequence[str]) -> ClassMapping:
    """The :class:`ClassMapping` of ``model_classes`` onto ``data_classes`` by canonical emotion."""
    data_by_name = {canonical(c): i for i, c in enumerate(data_classes)}
    shared, model_index, data_index, unmapped_model = [], [], [], []
    for i, name in enumerate(model_classes):
        key = canonical(name)
        if key is not None and key in data_by_name:
            shared.append(key)
            model_index.append(i)
            data_index.append(data_by_name[key])
        else:
            unmapped_model.append(name)
    unmapped_data = [c for c in data_classes if canonical(c) not in set(shared)]
    return ClassMapping(
        tuple(shared), tuple(model_index), tuple(data_index), tuple(unmapped_data), tuple(unmapped_model)
    )
