"""The one place Herdsman evaluates CEL: compiled once, evaluated within fixed costs.

Built on Google's cel-expr-python (cel-cpp), the implementation family the API server's
`x-kubernetes-validations` use, so a rule behaves the same offline as in the cluster. Python's
`eval` is never involved.

Cost limits, all per evaluation:

- `ITERATION_BUDGET`: cel-cpp stops an evaluation after 10,000 comprehension iterations
  (`all`, `exists`, `map`, `filter`), counted across nested and sequential comprehensions
  together. The budget is built into cel-expr-python 0.1.3 and cannot be changed from Python
  (an env config's `limits:` section is accepted and ignored); exceeding it is a `CelError`
  of kind "limit".
- `CelLimits.max_expression_length` (4096 characters): longer expressions are refused before
  compiling. The CRD fields holding expressions carry the same maxLength.
- `CelLimits.max_input_nodes` (10,000 values), `max_input_depth` (32 levels) and
  `max_string_length` (64 KiB per string): the input is walked before it is handed to cel-cpp,
  because converting a huge input costs more than evaluating over it. Without the iteration
  budget being tunable, these are what bound the work: an expression of bounded length over an
  input of bounded size, with at most 10,000 loop steps.

Every failure (syntax, type, runtime error value, limit) is one `CelError` carrying the
expression and the reason.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

ITERATION_BUDGET = 10_000
"""cel-cpp's comprehension iteration limit per evaluation (fixed by cel-expr-python)."""

ErrorKind = Literal["compile", "evaluate", "limit", "input"]


class ConditionError(Exception):
    """An expression that could not be compiled or evaluated, in the language `LANGUAGE` names
    (CEL here, Argo's expr in herdsman.analysis.argo_values)."""

    LANGUAGE = "condition"

    def __init__(self, expression: str, reason: str, kind: ErrorKind = "evaluate") -> None:
        self.expression = expression
        self.reason = reason
        self.kind = kind
        shown = expression if len(expression) <= 120 else expression[:117] + "..."
        super().__init__(f"{self.LANGUAGE} {kind} error in {shown!r}: {reason}")


class CelError(ConditionError):
    """A CEL expression that could not be compiled or evaluated."""

    LANGUAGE = "CEL"


@dataclass(frozen=True)
class CelLimits:
    """Our own cost limits, on top of cel-cpp's fixed iteration budget."""

    max_expression_length: int = 4096
    max_input_nodes: int = 10_000
    max_input_depth: int = 32
    max_string_length: int = 65_536


DEFAULT_LIMITS = CelLimits()

_CACHE_SIZE = 512


def _float_of(value: Any) -> float:
    return float(value)


def _int_of(value: Any) -> int:
    if isinstance(value, str):
        return int(value.strip())
    return int(value)


def _size_of(value: Any) -> int:
    return len(value)


def _runtime() -> Any:
    """cel-expr-python's module, imported on first use.

    Why not at import: cel-cpp and its two extensions hold about 12 MB of resident memory
    (libraries and heap), which an operator whose rollouts run no analysis never needs; the
    first condition compiled pays it once (tests/unit/test_import_footprint.py).
    """
    from cel_expr_python import cel

    return cel


def _argo_functions() -> list[Any]:
    """Functions Argo Rollouts' condition language offers, so ported conditions keep working.

    isNaN/isInf(number), asFloat/asInt(string or number), len(list, map or string). A
    conversion that fails (asFloat("x")) is an evaluation error, hence a measurement Error.
    """
    cel = _runtime()
    t = cel.Type
    number_types = (("double", t.DOUBLE), ("int", t.INT), ("uint", t.UINT))
    convertible = (*number_types, ("string", t.STRING))
    sized = (
        ("list", t.List(t.DYN)),
        ("map", t.Map(t.DYN, t.DYN)),
        ("string", t.STRING),
    )

    def overloads(
        name: str, result: Any, params: Iterable[tuple[str, Any]], impl: Callable[[Any], Any]
    ) -> Any:
        return cel.FunctionDecl(
            name,
            [cel.Overload(f"{name}_{suffix}", result, [p], impl=impl) for suffix, p in params],
        )

    return [
        overloads("isNaN", t.BOOL, number_types, lambda v: math.isnan(float(v))),
        overloads("isInf", t.BOOL, number_types, lambda v: math.isinf(float(v))),
        overloads("asFloat", t.DOUBLE, convertible, _float_of),
        overloads("asInt", t.INT, convertible, _int_of),
        overloads("len", t.INT, sized, _size_of),
    ]


class Environment:
    """Declared variables (all of dynamic type) and functions, with a cache of compiled programs.

    `Environment(["self", "oldSelf"])` suits CRD validation rules; `ANALYSIS` (variable
    `result`, the strings and math extensions, and Argo's helper functions) suits analysis
    conditions.
    """

    def __init__(
        self,
        variables: Iterable[str],
        *,
        argo_functions: bool = False,
        extensions: bool = True,
        limits: CelLimits = DEFAULT_LIMITS,
    ) -> None:
        self.variables = tuple(variables)
        self.limits = limits
        self._argo_functions = argo_functions
        self._extensions = extensions
        self._env: Any = None  # cel-cpp's environment, built by the first compile
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _compiler(self) -> Any:
        with self._lock:
            if self._env is None:
                cel = _runtime()
                from cel_expr_python.ext import ext_math, ext_strings

                self._env = cel.NewEnv(
                    variables=dict.fromkeys(self.variables, cel.Type.DYN),
                    functions=_argo_functions() if self._argo_functions else None,
                    extensions=[ext_strings.ExtStrings(), ext_math.ExtMath()]
                    if self._extensions
                    else None,
                )
            return self._env

    def compile(self, expression: str) -> Program:
        """The compiled program for `expression`; compiled once per environment."""
        if len(expression) > self.limits.max_expression_length:
            raise CelError(
                expression,
                f"expression is {len(expression)} characters long, the limit is "
                f"{self.limits.max_expression_length}",
                "limit",
            )
        if not expression.strip():
            raise CelError(expression, "expression is empty", "compile")
        with self._lock:
            compiled = self._cache.get(expression)
            if compiled is not None:
                self._cache.move_to_end(expression)
                return Program(expression, compiled, self)
        try:
            compiled = self._compiler().compile(expression)
        except RuntimeError as exc:
            raise CelError(expression, _clean(str(exc)), "compile") from None
        with self._lock:
            self._cache[expression] = compiled
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return Program(expression, compiled, self)

    def evaluate(self, expression: str, variables: Mapping[str, Any]) -> Any:
        """Compile (cached) and evaluate; the result as a plain Python value."""
        return self.compile(expression).evaluate(variables)


@dataclass(frozen=True)
class Program:
    """A compiled expression, bound to the environment (and limits) it was compiled in."""

    expression: str
    _compiled: Any
    environment: Environment

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Evaluate with `variables`; every declared variable must be given (None is null)."""
        missing = [name for name in self.environment.variables if name not in variables]
        if missing:
            raise CelError(self.expression, f"no value for {', '.join(missing)}", "input")
        data = {
            name: check_input(self.expression, value, self.environment.limits)
            for name, value in variables.items()
        }
        try:
            value = self._compiled.eval(data=data)
        except RuntimeError as exc:
            reason = _clean(str(exc))
            kind: ErrorKind = "limit" if "budget" in reason.lower() else "evaluate"
            if kind == "limit":
                reason = f"more than {ITERATION_BUDGET} comprehension iterations ({reason})"
            raise CelError(self.expression, reason, kind) from None
        type_name = value.type().name()
        if type_name in ("ERROR", "UNKNOWN"):
            raise CelError(self.expression, _clean(str(value)), "evaluate")
        return value.plain_value()


def check_input(expression: str, value: Any, limits: CelLimits = DEFAULT_LIMITS) -> Any:
    """`value` in the shapes cel-cpp takes (tuples become lists), or CelError if too big.

    Accepted: None, bool, int, float, str, bytes, datetime, timedelta, and lists, tuples and
    dicts of them.
    """
    nodes = 0

    def walk(item: Any, depth: int) -> Any:
        nonlocal nodes
        nodes += 1
        if nodes > limits.max_input_nodes:
            raise CelError(
                expression, f"input has more than {limits.max_input_nodes} values", "input"
            )
        if depth > limits.max_input_depth:
            raise CelError(
                expression, f"input is nested deeper than {limits.max_input_depth} levels", "input"
            )
        if item is None or isinstance(item, bool | int | float | datetime | timedelta):
            return item
        if isinstance(item, str | bytes):
            if len(item) > limits.max_string_length:
                raise CelError(
                    expression,
                    f"input has a string longer than {limits.max_string_length} characters",
                    "input",
                )
            return item
        if isinstance(item, list | tuple):
            return [walk(element, depth + 1) for element in item]
        if isinstance(item, Mapping):
            return {walk(k, depth + 1): walk(v, depth + 1) for k, v in item.items()}
        raise CelError(
            expression, f"input of type {type(item).__name__} is not a CEL value", "input"
        )

    return walk(value, 0)


def _clean(message: str) -> str:
    """cel-cpp messages carry a status prefix and a trailing code; keep the human part."""
    text = message.strip()
    for prefix in (
        "INVALID_ARGUMENT: ",
        "UNKNOWN: ",
        "INTERNAL: ",
        "OUT_OF_RANGE: ",
        "NOT_FOUND: ",
    ):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    for suffix in (" [INVALID_ARGUMENT]", " [INTERNAL]", " [UNKNOWN]"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return text.replace("ERROR: <input>:", "at ").strip()


ANALYSIS = Environment(["result"], argo_functions=True)
"""The environment analysis conditions are evaluated in: `result` plus Argo's helpers."""


def evaluate(expression: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate in an environment declaring exactly `variables` (cached per variable set)."""
    return _environment_for(tuple(sorted(variables))).evaluate(expression, variables)


_ENVIRONMENTS: dict[tuple[str, ...], Environment] = {}


def _environment_for(names: tuple[str, ...]) -> Environment:
    environment = _ENVIRONMENTS.get(names)
    if environment is None:
        environment = _ENVIRONMENTS.setdefault(names, Environment(names))
    return environment
