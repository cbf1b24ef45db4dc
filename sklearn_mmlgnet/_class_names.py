"""Class labels to the names written into the prompts, and the labels' checks."""

from __future__ import annotations

import warnings

from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from .text import prompt_name


def check_labels(y):
    """``y`` as a 1-D array of class labels; errors name ``y``."""
    try:
        y = column_or_1d(y, warn=True)
        _check_label_types(y)
        check_classification_targets(y)
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith("y ") else f"y: {msg}") from exc
    return y


def _check_label_types(y):
    """Refuse labels of mixed types, naming two that would read the same (1 and '1')."""
    if y.dtype != object:
        return
    first = {}
    for value in y.tolist():
        first.setdefault(type(value), value)
    if len(first) < 2:
        return
    by_text = {}
    for value in dict.fromkeys(y.tolist()):
        other = by_text.setdefault(str(value), value)
        if type(other) is not type(value):
            raise ValueError(f"y holds the labels {other!r} and {value!r}: two classes to numpy "
                             "but the same text; give every label one type.")
    raise ValueError(f"y mixes label types ({', '.join(t.__name__ for t in first)}); give "
                     "every label one type, e.g. all str.")


def resolve_class_names(classes, class_names):
    """Names used in the prompts, one per entry of ``classes``.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        The sorted labels of ``y``.
    class_names : dict, sequence of str or None
        ``{label: name}``, one name per sorted label, or None (the labels are the names).

    Returns
    -------
    names : list of str

    Raises
    ------
    ValueError
        When a label has no name, or two classes would get the same prompts (the
        same name up to case, spaces and underscores, or an empty name): one of
        them could never be predicted.

    Examples
    --------
    >>> import numpy as np
    >>> resolve_class_names(np.array([1, 2]), {1: "Woods", 2: "Roads"})
    ['Woods', 'Roads']
    >>> resolve_class_names(np.array(["Oak", "oak_"]), None)
    Traceback (most recent call last):
    ...
    ValueError: classes 'Oak' and 'oak_' give the same prompt name 'oak'...
    """
    labels = classes.tolist()
    if class_names is None:
        if not all(isinstance(c, str) for c in labels):
            warnings.warn(
                "y holds non-string labels and class_names is None: the prompts use the labels "
                f"themselves ({labels[:5]}...), which carry no meaning for the text encoder. "
                "Pass class_names={label: 'name', ...} to use real class names.",
                UserWarning, stacklevel=4)
        names = [str(c) for c in labels]
    elif isinstance(class_names, dict):
        missing = [c for c in labels if c not in class_names]
        if missing:
            raise ValueError(
                f"class_names has no name for label(s) {missing}; it maps "
                f"{sorted(map(str, class_names))}. Give a name for every label in y.")
        names = [str(class_names[c]) for c in labels]
    else:
        names = [str(n) for n in class_names]
        if len(names) != len(labels):
            raise ValueError(
                f"class_names has {len(names)} names but y holds {len(labels)} classes "
                f"({labels}); a sequence must give one name per sorted label, or pass a dict.")
    _check_distinct(labels, names)
    return names


def _check_distinct(labels, names):
    """Refuse empty names and names that would write the same prompts."""
    seen = {}
    for label, name in zip(labels, names):
        key = prompt_name(name)
        if not key:
            raise ValueError(
                f"class {label!r} has an empty name ({name!r}); every class needs a name for "
                "its prompts. Pass class_names={label: 'name', ...}.")
        if key in seen:
            raise ValueError(
                f"classes {seen[key]!r} and {label!r} give the same prompt name {key!r} "
                f"(names {names[labels.index(seen[key])]!r} and {name!r}), so one of them could "
                "never be predicted; give them distinct names with class_names=.")
        seen[key] = label


def resolve_class_descriptions(classes, class_descriptions, owner="y"):
    """Description sentences per class, in the order of ``classes``.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        The sorted labels of ``y`` (or the texts to describe).
    class_descriptions : dict or None
        ``{label: sentence or sequence of sentences}``. A label left out has no
        description (its name prompts alone); a label not in ``classes`` is refused.
    owner : str, default="y"
        What holds ``classes``, as errors name it.

    Returns
    -------
    descriptions : list of list of str
        One (possibly empty) list per class.

    Examples
    --------
    >>> import numpy as np
    >>> resolve_class_descriptions(np.array([1, 2]), {2: "Dark, flat asphalt."})
    [[], ['Dark, flat asphalt.']]
    >>> resolve_class_descriptions(np.array([1, 2]), {3: "Water."})
    Traceback (most recent call last):
    ...
    ValueError: class_descriptions has descriptions for label(s) [3], which y does not hold...
    """
    labels = classes.tolist()
    if class_descriptions is None:
        return [[] for _ in labels]
    if not isinstance(class_descriptions, dict):
        raise TypeError("class_descriptions must be a dict {label: str or list of str} or None; "
                        f"got {type(class_descriptions).__name__}.")
    known = set(labels)
    unknown = [k for k in class_descriptions if k not in known]
    if unknown:
        raise ValueError(
            f"class_descriptions has descriptions for label(s) {unknown}, which {owner} does not "
            f"hold (its classes are {labels}); key the descriptions by the labels of {owner}.")
    out = []
    for label in labels:
        value = class_descriptions.get(label, ())
        sentences = [value] if isinstance(value, str) else value
        if not isinstance(sentences, (list, tuple)) or not all(
                isinstance(s, str) and s.strip() for s in sentences):
            raise ValueError(
                f"class_descriptions[{label!r}] must be a non-empty str or a list of non-empty "
                f"str; got {value!r}.")
        out.append(list(sentences))
    return out
