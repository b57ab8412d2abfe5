"""SimpleBroker's alias rules: ``@name`` names a queue through the alias table.

Only an operand starting with ``@`` is an alias; a plain name is always the
literal queue, even when an alias of that name exists. One level only: a
target may not itself be an alias, nor an alias be some alias's target, so
resolution is one lookup and cycles cannot form. Texts are SimpleBroker's.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import AliasError, InvalidTypeError
from .validation import check_queue_name

PREFIX = "@"


def alias_of(name: object) -> str | None:
    """The alias an ``@name`` operand names, or ``None`` for a plain queue name."""
    if not isinstance(name, str) or not name.startswith(PREFIX):
        return None
    alias = name[len(PREFIX) :]
    if not alias:
        raise AliasError("Alias name cannot be empty")
    return alias


def not_defined(alias: str) -> AliasError:
    return AliasError(f"Alias '{alias}' is not defined")


def check_new(alias: object, target: object) -> tuple[str, str]:
    """What can be refused without reading the table, in SimpleBroker's order."""
    if not isinstance(alias, str) or not isinstance(target, str):
        raise InvalidTypeError("alias and target must be str")
    if alias == target:
        raise AliasError("Alias and target must differ")
    if target.startswith(PREFIX):
        raise AliasError("Target names should not include the '@' prefix")
    if not target:
        raise AliasError("Alias target cannot be empty")
    return check_queue_name(alias), check_queue_name(target)


def check_against(alias: str, target: str, current: Mapping[str, str]) -> None:
    """The one-level rules against the aliases that exist now."""
    if alias in current:
        raise AliasError(f"Alias '{alias}' already exists")
    if target in current:
        raise AliasError("Cannot target another alias")
    if alias in current.values():
        raise AliasError("Cannot turn an existing alias target into an alias")


def shadow_warning(alias: str, target: str) -> str:
    """Said when a queue named like the new alias has messages."""
    return (
        f"Queue '{alias}' already exists with messages. The alias @{alias} will redirect to "
        f"'{target}' while the queue {alias} remains accessible directly."
    )


def check_operand(name: object) -> str:
    """A queue operand: a valid queue name, or ``@`` and a non-empty alias."""
    if alias_of(name) is not None:
        return name  # type: ignore[return-value]  # alias_of returned: it is a str
    return check_queue_name(name)
