"""The harness's error tree: every message says what was wrong and what to do next."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class of every error the harness raises on purpose."""


class ConfigError(HarnessError, ValueError):
    """A run specification, override or component parameter is invalid."""


class UnknownComponentError(ConfigError, KeyError):
    """A component name is not registered; the message lists the available ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class PluginError(HarnessError):
    """A plugin failed to load or registered something invalid."""


class DuplicateComponentError(PluginError):
    """Two plugins registered a component of the same kind under the same name."""


class QueryError(HarnessError, ValueError):
    """A query to the oracle was refused; it was not charged to the budget."""


class InvalidQueryError(QueryError):
    """The query's shape, dtype or values are not what the victim accepts."""


class BudgetExhaustedError(QueryError):
    """The query would exceed the attack's query budget."""


class CacheError(HarnessError):
    """A cache entry or result file is missing, corrupt or of another version."""


class OutputDirError(HarnessError, OSError):
    """The output location is a file, or cannot be created or written."""


class DatasetError(HarnessError, FileNotFoundError):
    """A dataset is missing or malformed; the message says where it looked."""


class ComponentFailure(HarnessError):
    """A plugin component raised or misbehaved inside a cell; the message names it.

    ``component`` is ``"<kind>:<name>"`` (e.g. ``"defense:pad"``) or a plugin
    (``"plugin:<name>"``), recorded in the failed cell's result.
    """

    def __init__(self, message: str, component: str | None = None) -> None:
        super().__init__(message)
        self.component = component


class GridInterrupted(HarnessError):
    """The user pressed Ctrl-C; finished cells are kept and a re-run resumes."""


class ResultFileError(HarnessError):
    """A result file that cannot be trusted: unreadable, truncated, invalid or edited."""

    def __init__(self, message: str, path: object = None, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.path = path
        self.fields = fields
