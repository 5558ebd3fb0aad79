"""Stop a papermill run given a parameter the notebook does not have, instead of ignoring it.

papermill (2.x, ``papermill/parameterize.py``) puts the parameters it is given in a new cell
tagged ``injected-parameters`` right after the cell tagged ``parameters``; for a Python
kernel the cell is ``# Parameters`` and one ``name = value`` line each
(``PythonTranslator.codify``). Of a name the parameters cell lacks it only logs "Passed
unknown parameter", and the run goes on with the default. The kernel never sees the cell's
tags, but it keeps every cell it ran in its input history: the notebooks call
:func:`check_notebook_parameters` in the cell after the parameters cell, which reads the
cell run just before it. Run normally (JupyterLab, no papermill) that is the parameters cell
itself, not an injected one, and nothing happens.
"""

from __future__ import annotations

import ast
import difflib
from typing import Any

from ._errors import UnknownParameterError

__all__ = [
    "RENAMED_PARAMETERS",
    "assigned_names",
    "check_notebook_parameters",
    "injected_parameters",
]

#: Parameters the notebooks once had, and what they are called now.
RENAMED_PARAMETERS = {"db_path": "db"}
#: The first line of the cell papermill injects (its default ``comment="Parameters"``).
_INJECTED_HEADER = "# Parameters"


def injected_parameters(source: str) -> list[str] | None:
    """The names a papermill ``injected-parameters`` cell assigns, or None if ``source`` is
    not such a cell."""
    lines = source.strip().splitlines()
    if not lines or lines[0].strip() != _INJECTED_HEADER:
        return None
    return assigned_names(source)


def assigned_names(source: str) -> list[str]:
    """The names a cell assigns at its top level, in order (a parameters cell's parameters)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def _history(shell: Any) -> list[str]:
    # The running cell is last: IPython stores a cell in its history before running it.
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    return [str(cell) for cell in history or []]


def check_notebook_parameters(*known: str) -> None:
    """Raise :class:`~airq_nb.UnknownParameterError` if papermill gave this notebook a
    parameter it does not have, naming the ones it has (and, for an old name, the new one).

    Call it first thing in the cell after the parameters cell. Under papermill the cell run
    before it is papermill's injected cell, and the one before that the parameters cell,
    whose assignments are the known names unless ``known`` lists them. Run by hand, or
    outside IPython, it checks nothing and shows nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    history = _history(get_ipython())
    if len(history) < 3:
        return
    given = injected_parameters(history[-2])
    if not given:
        return
    names = known or tuple(assigned_names(history[-3]))
    unknown = [name for name in given if name not in names]
    if unknown:
        raise UnknownParameterError(_message(unknown, tuple(names)))


def _message(unknown: list[str], known: tuple[str, ...]) -> str:
    hints = []
    for name in unknown:
        renamed = RENAMED_PARAMETERS.get(name)
        close = difflib.get_close_matches(name, known, n=1)
        if renamed in known:
            hints.append(f"{name} is now called {renamed} (-p {renamed} <value>)")
        elif close:
            hints.append(f"{name}: did you mean {close[0]}?")
        else:
            hints.append(f"{name} is not one of them")
    listed = ", ".join(unknown)
    return (
        f"papermill was given {listed}, which this notebook does not have (it would be "
        f"ignored and the default used): {'; '.join(hints)}. Its parameters are: "
        f"{', '.join(known)}"
    )
