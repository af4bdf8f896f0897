"""Argo Rollouts' condition language (antonmedv/expr), evaluated as Argo evaluates it.

Argo compiles a successCondition/failureCondition with expr over an environment holding
`result` and its helpers (asInt, asFloat, isNaN, isInf, isNil, default), runs it, and wants a
bool. This module is a faithful reimplementation of the part of expr those conditions use,
parsed with lark (a grammar, not Python's `eval`) and walked by a small interpreter:

- literals: numbers (`1`, `1_000`, `0x1F`, `0.95`, `1e3`), strings ('...' and "..." with
  escapes), `true`, `false`, `nil`, arrays `[1, 2]`, maps `{a: 1}`;
- `result`, members `result.foo`, `result?.foo`, `result["foo"]`, indexes `result[0]`
  (negative from the end), slices `result[1:3]`;
- `not`/`!`, `and`/`&&`, `or`/`||` (short-circuit, bool operands only), `??`, `? :`;
- `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`, `contains`, `startsWith`, `endsWith`,
  `matches`, `+`, `-`, `*`, `/` (always a float, as in expr), `%`, `**`/`^`, `..`;
- expr's builtins over lists with a predicate, written bare or in braces, `#` being the item
  and `.field` short for `#.field`: `all`, `any`, `none`, `one`, `filter`, `map`, `count`;
  and `len`, `abs`, `int`, `float`, `string`, `upper`, `lower`, `trim`, `first`, `last`,
  `max`, `min`, `sum`;
- Argo's helpers with Argo's meaning: `asInt`/`asFloat` (a number, or a string parsed as Go's
  strconv does), `isNaN`, `isInf`, `isNil(_)` and `default(_, d)` (both look at `result`
  whatever their first argument is, as Argo's implementations do).

What Go's expr does, this does: numbers compare across int and float, `==` between different
types is false, `<` between them is an error, a missing map key is `nil`, an index out of range
is an error, a name that is not in the environment (`results`) does not compile. Numbers that
come from data are floats, as Go's encoding/json decodes them for Argo's providers.

Cost: expressions are at most `MAX_LENGTH` characters, inputs are bounded like CEL's (see
herdsman.cel.check_input) and at most `ITERATION_BUDGET` predicate calls run per evaluation.
Every failure is an `ArgoExprError` naming the expression and the reason.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from herdsman.cel import DEFAULT_LIMITS, CelError, check_input

MAX_LENGTH = 4096
ITERATION_BUDGET = 10_000
_CACHE_SIZE = 512

ErrorKind = Literal["compile", "evaluate", "limit", "input"]

ENVIRONMENT = ("result",)
"""The only variable; the rest of Argo's environment is functions."""


class ArgoExprError(Exception):
    """An Argo (expr) condition that could not be compiled or evaluated."""

    def __init__(self, expression: str, reason: str, kind: ErrorKind = "evaluate") -> None:
        self.expression = expression
        self.reason = reason
        self.kind = kind
        shown = expression if len(expression) <= 120 else expression[:117] + "..."
        super().__init__(f"expr {kind} error in {shown!r}: {reason}")


class _Fail(Exception):
    """Raised inside evaluation; becomes an ArgoExprError with the expression attached."""


_GRAMMAR = r"""
?start: expr

?expr: ternary
?ternary: coalesce
        | coalesce "?" ternary ":" ternary  -> cond
?coalesce: or_expr
         | coalesce "??" or_expr            -> coalesce
?or_expr: and_expr
        | or_expr OR and_expr               -> or_
?and_expr: cmp
         | and_expr AND cmp                 -> and_
?cmp: range_expr
    | cmp CMP_OP range_expr                 -> binop
    | cmp NOT IN range_expr              -> not_in
    | cmp IN range_expr                     -> in_
?range_expr: add
           | add ".." add                   -> range_
?add: mul
    | add ADD_OP mul                        -> binop
?mul: unary
    | mul MUL_OP unary                      -> binop
?unary: pow
      | NOT unary                           -> not_
      | "-" unary                           -> neg
      | "+" unary                           -> pos
?pow: postfix
    | postfix POW_OP unary                  -> binop
?postfix: atom
        | postfix "." NAME                  -> member
        | postfix "?." NAME                 -> safe_member
        | postfix "[" expr "]"              -> index
        | postfix "[" [expr] ":" [expr] "]" -> slice
?atom: NUMBER                               -> number
     | STRING                               -> string
     | "true"                               -> true
     | "false"                              -> false
     | "nil"                                -> nil
     | NAME "(" [arg ("," arg)*] ")"        -> call
     | NAME                                 -> name
     | "#"                                  -> pointer
     | "." NAME                             -> pointer_member
     | "[" [expr ("," expr)*] "]"           -> array
     | "{" [pair ("," pair)*] "}"           -> map
     | "(" expr ")"
?arg: expr
    | "{" expr "}"                          -> closure
pair: (NAME | STRING | NUMBER) ":" expr

OR: "or" | "||"
AND: "and" | "&&"
NOT: "not" | "!"
IN: "in"
CMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">" | "contains" | "startsWith" | "endsWith" | "matches"
ADD_OP: "+" | "-"
MUL_OP: "*" | "/" | "%"
POW_OP: "**" | "^"
NUMBER: /0[xX][0-9a-fA-F_]+/ | /(\d[\d_]*)?\.\d[\d_]*([eE][+-]?\d+)?/ | /\d[\d_]*([eE][+-]?\d+)?/
STRING: /"(\\.|[^"\\])*"/ | /'(\\.|[^'\\])*'/ | /`[^`]*`/
NAME: /(?!(and|or|not|in|contains|startsWith|endsWith|matches|true|false|nil)\b)[A-Za-z_$][A-Za-z0-9_$]*/

%import common.WS
%ignore WS
"""


@cache
def _parser() -> Lark:
    # LALR(1): linear time, and lark refuses the grammar at import if it were ambiguous. expr's
    # `{` opens both a map and a predicate; one token of lookahead (`:` after a key) tells them
    # apart.
    return Lark(_GRAMMAR, parser="lalr")


# --- values ------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type(value: Any) -> str:
    """Go's type names, for messages that read like Argo's."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return type(value).__name__


def _equal(left: Any, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if left is None or right is None:
        return left is right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            _equal(a, b) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    return type(left) is type(right) and bool(left == right)


def _data(value: Any) -> Any:
    """Input as Argo's providers hand it over: JSON numbers are float64."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [_data(v) for v in value]
    if isinstance(value, dict):
        return {k: _data(v) for k, v in value.items()}
    return value


_GO_INT = re.compile(r"^[+-]?\d+$")
_GO_FLOAT = re.compile(
    r"^[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE
)


def _as_int(value: Any) -> int:
    if _is_number(value):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            raise _Fail(f"asInt() cannot convert {value}")
        return int(value)
    if isinstance(value, str):
        if not _GO_INT.match(value):
            raise _Fail(f'strconv.ParseInt: parsing "{value}": invalid syntax')
        number = int(value)
        if not -(2**63) <= number < 2**63:
            raise _Fail(f'strconv.ParseInt: parsing "{value}": value out of range')
        return number
    raise _Fail(f"asInt() not supported on {_type(value)} {value!r}")


def _as_float(value: Any) -> float:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        if not _GO_FLOAT.match(value):
            raise _Fail(f'strconv.ParseFloat: parsing "{value}": invalid syntax')
        return float(value)
    raise _Fail(f"asFloat() not supported on {_type(value)} {value!r}")


def _float_arg(name: str, value: Any) -> float:
    if not _is_number(value):
        raise _Fail(f"{name}() wants a number, not {_type(value)}")
    return float(value)


def _len(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise _Fail(f"invalid argument for len (type {_type(value)})")


def _list_arg(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Fail(f"{name}() wants an array, not {_type(value)}")
    return value


def _to_string(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


# --- compiled programs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgoProgram:
    """A parsed and checked condition, ready to evaluate against any `result`."""

    expression: str
    _tree: Tree[Token]

    def evaluate(self, result: Any) -> Any:
        """The value of the expression for `result` (usually a bool)."""
        try:
            data = _data(check_input(self.expression, result, DEFAULT_LIMITS))
        except CelError as exc:
            raise ArgoExprError(self.expression, exc.reason, "input") from None
        interpreter = _Interpreter(data, Argo_helpers(data))
        try:
            return interpreter.eval(self._tree, None)
        except _Budget:
            raise ArgoExprError(
                self.expression,
                f"more than {ITERATION_BUDGET} predicate calls in one evaluation",
                "limit",
            ) from None
        except _Fail as exc:
            raise ArgoExprError(self.expression, str(exc), "evaluate") from None
        except RecursionError:
            raise ArgoExprError(self.expression, "expression nested too deeply", "limit") from None
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ArgoExprError(self.expression, str(exc), "evaluate") from None

    def condition(self, result: Any) -> bool:
        """Evaluate as Argo evaluates a condition: anything but a bool is an error."""
        value = self.evaluate(result)
        if not isinstance(value, bool):
            raise ArgoExprError(
                self.expression, f"expected bool, but got {_type(value)}", "evaluate"
            )
        return value


class _Budget(Exception):
    pass


def Argo_helpers(result: Any) -> dict[str, Callable[..., Any]]:
    """The functions of Argo's condition environment, closed over `result` like Argo's."""

    def default(_ignored: Any, fallback: Any) -> Any:
        return fallback if result is None else result

    def is_nil(_ignored: Any) -> bool:
        return result is None

    return {
        "asInt": _as_int,
        "asFloat": _as_float,
        "isNaN": lambda v: math.isnan(_float_arg("isNaN", v)),
        "isInf": lambda v: math.isinf(_float_arg("isInf", v)),
        "isNil": is_nil,
        "default": default,
        "len": _len,
        "abs": lambda v: abs(v) if _is_number(v) else _raise(f"abs() of {_type(v)}"),
        "int": _as_int,
        "float": _as_float,
        "string": _to_string,
        "upper": lambda v: _str_arg("upper", v).upper(),
        "lower": lambda v: _str_arg("lower", v).lower(),
        "trim": lambda v: _str_arg("trim", v).strip(),
        "first": lambda v: _list_arg("first", v)[0] if _list_arg("first", v) else None,
        "last": lambda v: _list_arg("last", v)[-1] if _list_arg("last", v) else None,
        "max": lambda *v: _extreme(max, "max", v),
        "min": lambda *v: _extreme(min, "min", v),
        "sum": lambda v: sum(_float_or_int(x) for x in _list_arg("sum", v)),
    }


def _raise(message: str) -> Any:
    raise _Fail(message)


def _str_arg(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Fail(f"{name}() wants a string, not {_type(value)}")
    return value


def _float_or_int(value: Any) -> float | int:
    if not _is_number(value):
        raise _Fail(f"cannot add {_type(value)}")
    return value  # type: ignore[no-any-return]


def _extreme(pick: Callable[..., Any], name: str, values: Sequence[Any]) -> Any:
    items = list(values[0]) if len(values) == 1 and isinstance(values[0], list) else list(values)
    if not items or not all(_is_number(v) for v in items):
        raise _Fail(f"{name}() wants numbers")
    return pick(items)


_PREDICATE_BUILTINS = ("all", "any", "none", "one", "filter", "map", "count")
_FUNCTIONS = frozenset({*_PREDICATE_BUILTINS, *Argo_helpers(None)})
_ARITY: dict[str, tuple[int, int]] = {
    **dict.fromkeys(_PREDICATE_BUILTINS, (2, 2)),
    "default": (2, 2),
    "max": (1, 64),
    "min": (1, 64),
}


class _Interpreter:
    def __init__(self, result: Any, helpers: Mapping[str, Callable[..., Any]]) -> None:
        self.result = result
        self.helpers = helpers
        self.iterations = 0

    def eval(self, node: Tree[Token] | Token, item: Any) -> Any:
        if isinstance(node, Token):
            raise _Fail(f"unexpected token {node!s}")
        rule = node.data
        kids = node.children
        if rule == "number":
            return _number(str(kids[0]))
        if rule == "string":
            return _string(str(kids[0]))
        if rule == "true":
            return True
        if rule == "false":
            return False
        if rule == "nil":
            return None
        if rule == "name":
            return self.result  # the checker allows no other name
        if rule == "pointer":
            return item
        if rule == "pointer_member":
            return _member(item, str(kids[0]), safe=False)
        if rule == "member":
            return _member(self.eval(kids[0], item), str(kids[1]), safe=False)
        if rule == "safe_member":
            return _member(self.eval(kids[0], item), str(kids[1]), safe=True)
        if rule == "index":
            return _index(self.eval(kids[0], item), self.eval(kids[1], item))
        if rule == "slice":
            return _slice(
                self.eval(kids[0], item),
                None if kids[1] is None else self.eval(kids[1], item),
                None if kids[2] is None else self.eval(kids[2], item),
            )
        if rule == "array":
            return [self.eval(k, item) for k in kids if k is not None]
        if rule == "map":
            found: dict[Any, Any] = {}
            for pair in kids:
                if pair is None:
                    continue
                assert isinstance(pair, Tree)
                key_token = pair.children[0]
                assert isinstance(key_token, Token)
                key = _string(str(key_token)) if key_token.type == "STRING" else str(key_token)
                found[key] = self.eval(pair.children[1], item)
            return found
        if rule == "not_":
            return not _bool("not", self.eval(kids[1], item))
        if rule == "neg":
            value = self.eval(kids[0], item)
            if not _is_number(value):
                raise _Fail(f"invalid operation: - {_type(value)}")
            return -value
        if rule == "pos":
            value = self.eval(kids[0], item)
            if not _is_number(value):
                raise _Fail(f"invalid operation: + {_type(value)}")
            return value
        if rule == "and_":
            if not _bool("and", self.eval(kids[0], item)):
                return False
            return _bool("and", self.eval(kids[2], item))
        if rule == "or_":
            if _bool("or", self.eval(kids[0], item)):
                return True
            return _bool("or", self.eval(kids[2], item))
        if rule == "cond":
            if _bool("?:", self.eval(kids[0], item)):
                return self.eval(kids[1], item)
            return self.eval(kids[2], item)
        if rule == "coalesce":
            left = self.eval(kids[0], item)
            return self.eval(kids[1], item) if left is None else left
        if rule == "binop":
            return _binop(str(kids[1]), self.eval(kids[0], item), self.eval(kids[2], item))
        if rule == "in_":
            return _contains(self.eval(kids[2], item), self.eval(kids[0], item))
        if rule == "not_in":
            return not _contains(self.eval(kids[3], item), self.eval(kids[0], item))
        if rule == "range_":
            low, high = self.eval(kids[0], item), self.eval(kids[1], item)
            if not (isinstance(low, int) and isinstance(high, int)) or isinstance(low, bool):
                raise _Fail("a range wants integers")
            if high - low > ITERATION_BUDGET:
                raise _Budget()
            return list(range(low, high + 1))
        if rule == "call":
            return self.call(node, item)
        if rule == "closure":
            raise _Fail("a predicate {...} is only valid as a builtin's second argument")
        raise _Fail(f"unsupported syntax: {rule}")

    def call(self, node: Tree[Token], item: Any) -> Any:
        name = str(node.children[0])
        args = [a for a in node.children[1:] if a is not None]
        if name in _PREDICATE_BUILTINS:
            items = _list_arg(name, self.eval(args[0], item))
            predicate = args[1]
            if isinstance(predicate, Tree) and predicate.data == "closure":
                predicate = predicate.children[0]
            return self.predicate(name, items, predicate)
        values = [self.eval(a, item) for a in args]
        return self.helpers[name](*values)

    def predicate(self, name: str, items: list[Any], body: Tree[Token] | Token) -> Any:
        def run(element: Any) -> Any:
            self.iterations += 1
            if self.iterations > ITERATION_BUDGET:
                raise _Budget()
            return self.eval(body, element)

        if name == "map":
            return [run(e) for e in items]
        if name == "filter":
            return [e for e in items if _bool("filter", run(e))]
        if name == "all":
            return all(_bool("all", run(e)) for e in items)
        if name == "any":
            return any(_bool("any", run(e)) for e in items)
        if name == "none":
            return not any(_bool("none", run(e)) for e in items)
        if name == "one":
            return sum(_bool("one", run(e)) for e in items) == 1
        return sum(_bool("count", run(e)) for e in items)  # count


def _bool(operation: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Fail(f"invalid operation: {operation} on {_type(value)} (a bool is needed)")
    return value


def _number(text: str) -> int | float:
    clean = text.replace("_", "")
    if clean[:2].lower() == "0x":
        return int(clean, 16)
    if any(c in clean for c in ".eE"):
        return float(clean)
    return int(clean)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


def _string(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 5 < len(body) + 0:
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _member(value: Any, name: str, *, safe: bool) -> Any:
    if value is None:
        if safe:
            return None
        raise _Fail(f"cannot fetch {name} from <nil>")
    if isinstance(value, dict):
        return value.get(name)
    raise _Fail(f"cannot fetch {name} from {_type(value)}")


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list | str):
        if not _is_number(key) or (isinstance(key, float) and not key.is_integer()):
            raise _Fail(f"cannot use {_type(key)} as an index")
        position = int(key)
        if position < 0:
            position += len(value)
        if not 0 <= position < len(value):
            raise _Fail(f"index out of range: {int(key)} (array length is {len(value)})")
        return value[position]
    if value is None:
        raise _Fail(f"cannot fetch {_to_string(key)} from <nil>")
    raise _Fail(f"cannot fetch {_to_string(key)} from {_type(value)}")


def _slice(value: Any, low: Any, high: Any) -> Any:
    if not isinstance(value, list | str):
        raise _Fail(f"cannot slice {_type(value)}")
    start = 0 if low is None else int(low)
    end = len(value) if high is None else int(high)
    if start < 0:
        start += len(value)
    if end < 0:
        end += len(value)
    if not 0 <= start <= end <= len(value):
        raise _Fail(f"slice bounds out of range [{start}:{end}]")
    return value[start:end]


def _contains(container: Any, element: Any) -> bool:
    if isinstance(container, list):
        return any(_equal(element, e) for e in container)
    if isinstance(container, dict):
        return element in container
    if container is None:
        return False
    raise _Fail(f"operator in not defined on {_type(container)}")


def _binop(op: str, left: Any, right: Any) -> Any:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in ("<", "<=", ">", ">="):
        if (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return {
                "<": left < right,
                "<=": left <= right,
                ">": left > right,
                ">=": left >= right,
            }[op]
        raise _Fail(f"invalid operation: {op} (mismatched types {_type(left)} and {_type(right)})")
    if op in ("contains", "startsWith", "endsWith", "matches"):
        if not (isinstance(left, str) and isinstance(right, str)):
            raise _Fail(
                f"invalid operation: {op} (mismatched types {_type(left)} and {_type(right)})"
            )
        if op == "contains":
            return right in left
        if op == "startsWith":
            return left.startswith(right)
        if op == "endsWith":
            return left.endswith(right)
        try:
            return re.search(right, left) is not None
        except re.error as exc:
            raise _Fail(f"invalid regular expression {right!r}: {exc}") from None
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if op == "+" and isinstance(left, list) and isinstance(right, list):
        return left + right
    if not (_is_number(left) and _is_number(right)):
        raise _Fail(f"invalid operation: {op} (mismatched types {_type(left)} and {_type(right)})")
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        # expr's `/` is always a float division; Go gives ±Inf or NaN for a zero divisor.
        if right == 0:
            return math.nan if left == 0 or math.isnan(left) else math.copysign(math.inf, left)
        return float(left) / float(right)
    if op == "%":
        if not (isinstance(left, int) and isinstance(right, int)):
            raise _Fail(f"invalid operation: % (mismatched types {_type(left)} and {_type(right)})")
        if right == 0:
            raise _Fail("integer divide by zero")
        return int(math.fmod(left, right))
    if op in ("**", "^"):
        return math.pow(float(left), float(right))
    raise _Fail(f"unsupported operator {op}")


# --- compiling ---------------------------------------------------------------------------------


def _check(expression: str, node: Tree[Token] | Token, in_predicate: bool) -> None:
    """What expr's compiler refuses with Argo's environment: unknown names, unknown
    functions, a wrong number of arguments, `#` outside a predicate."""
    if isinstance(node, Token) or node is None:
        return
    rule = node.data
    if rule == "name":
        name = str(node.children[0])
        if name not in ENVIRONMENT:
            hint = " (did you mean result?)" if name.startswith("result") else ""
            raise ArgoExprError(expression, f"unknown name {name}{hint}", "compile")
    if rule in ("pointer", "pointer_member") and not in_predicate:
        raise ArgoExprError(
            expression, "# and .field are only valid inside a builtin's predicate", "compile"
        )
    if rule == "closure" and not in_predicate:
        raise ArgoExprError(expression, "a {...} predicate is only valid in a builtin", "compile")
    if rule == "call":
        name = str(node.children[0])
        args = [a for a in node.children[1:] if a is not None]
        if name not in _FUNCTIONS:
            raise ArgoExprError(expression, f"unknown func {name}", "compile")
        low, high = _ARITY.get(name, (1, 1))
        if not low <= len(args) <= high:
            raise ArgoExprError(
                expression,
                f"{name}() takes {low if low == high else f'{low} to {high}'} argument"
                f"{'s' if high > 1 else ''}, not {len(args)}",
                "compile",
            )
        for position, arg in enumerate(args):
            is_closure = isinstance(arg, Tree) and arg.data == "closure"
            if is_closure and (name not in _PREDICATE_BUILTINS or position != 1):
                raise ArgoExprError(expression, f"{name}() takes no {{...}} predicate", "compile")
            _check(expression, arg, in_predicate or (name in _PREDICATE_BUILTINS and position == 1))
        return
    for child in node.children:
        if isinstance(child, Tree):
            _check(expression, child, in_predicate)


_cache: OrderedDict[str, ArgoProgram] = OrderedDict()
_lock = threading.Lock()


def compile_expr(expression: str) -> ArgoProgram:
    """The checked program for `expression` (cached); ArgoExprError when expr would refuse it."""
    if len(expression) > MAX_LENGTH:
        raise ArgoExprError(
            expression,
            f"expression is {len(expression)} characters long, the limit is {MAX_LENGTH}",
            "limit",
        )
    if not expression.strip():
        raise ArgoExprError(expression, "expression is empty", "compile")
    with _lock:
        found = _cache.get(expression)
        if found is not None:
            _cache.move_to_end(expression)
            return found
    try:
        tree = _parser().parse(expression)
    except UnexpectedInput as exc:
        column = getattr(exc, "column", -1)
        where = f"at column {column}" if isinstance(column, int) and column > 0 else "at the end"
        raise ArgoExprError(expression, f"syntax error {where}", "compile") from None
    except LarkError as exc:
        raise ArgoExprError(expression, f"syntax error: {exc}", "compile") from None
    if isinstance(tree, Token):
        tree = Tree("start", [tree])
    _check(expression, tree, False)
    program = ArgoProgram(expression, tree)
    with _lock:
        _cache[expression] = program
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return program


def evaluate_condition(expression: str, result: Any) -> bool:
    """Compile (cached) and evaluate one condition as Argo does: a bool, or ArgoExprError."""
    return compile_expr(expression).condition(result)
