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

The values and operators themselves (Go's types, conversions, comparisons) are in
argo_values.py; this module parses, checks and walks.

Cost: expressions are at most `MAX_LENGTH` characters, inputs are bounded like CEL's (see
herdsman.cel.check_input) and at most `ITERATION_BUDGET` predicate calls run per evaluation.
Every failure is an `ArgoExprError` naming the expression and the reason.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from herdsman.analysis import argo_values as go
from herdsman.analysis.argo_values import ArgoExprError as ArgoExprError
from herdsman.cel import DEFAULT_LIMITS, CelError, check_input

MAX_LENGTH = 4096
ITERATION_BUDGET = 10_000
_CACHE_SIZE = 512

ENVIRONMENT = ("result",)
"""The only variable; the rest of Argo's environment is functions."""


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


# --- compiled programs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgoProgram:
    """A parsed and checked condition, ready to evaluate against any `result`."""

    expression: str
    _tree: Tree[Token]

    def evaluate(self, result: Any) -> Any:
        """The value of the expression for `result` (usually a bool)."""
        try:
            data = go.as_data(check_input(self.expression, result, DEFAULT_LIMITS))
        except CelError as exc:
            raise ArgoExprError(self.expression, exc.reason, "input") from None
        interpreter = _Interpreter(data, go.helpers(data))
        try:
            return interpreter.eval(self._tree, None)
        except _Budget:
            raise ArgoExprError(
                self.expression,
                f"more than {ITERATION_BUDGET} predicate calls in one evaluation",
                "limit",
            ) from None
        except go.Fail as exc:
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
                self.expression, f"expected bool, but got {go.type_name(value)}", "evaluate"
            )
        return value


class _Budget(Exception):
    pass


_PREDICATE_BUILTINS = ("all", "any", "none", "one", "filter", "map", "count")
_FUNCTIONS = frozenset({*_PREDICATE_BUILTINS, *go.helpers(None)})
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
            raise go.Fail(f"unexpected token {node!s}")
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
            return go.member(item, str(kids[0]), safe=False)
        if rule == "member":
            return go.member(self.eval(kids[0], item), str(kids[1]), safe=False)
        if rule == "safe_member":
            return go.member(self.eval(kids[0], item), str(kids[1]), safe=True)
        if rule == "index":
            return go.index(self.eval(kids[0], item), self.eval(kids[1], item))
        if rule == "slice":
            return go.slice_of(
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
            return not go.truth("not", self.eval(kids[1], item))
        if rule == "neg":
            value = self.eval(kids[0], item)
            if not go.is_number(value):
                raise go.Fail(f"invalid operation: - {go.type_name(value)}")
            return -value
        if rule == "pos":
            value = self.eval(kids[0], item)
            if not go.is_number(value):
                raise go.Fail(f"invalid operation: + {go.type_name(value)}")
            return value
        if rule == "and_":
            if not go.truth("and", self.eval(kids[0], item)):
                return False
            return go.truth("and", self.eval(kids[2], item))
        if rule == "or_":
            if go.truth("or", self.eval(kids[0], item)):
                return True
            return go.truth("or", self.eval(kids[2], item))
        if rule == "cond":
            if go.truth("?:", self.eval(kids[0], item)):
                return self.eval(kids[1], item)
            return self.eval(kids[2], item)
        if rule == "coalesce":
            left = self.eval(kids[0], item)
            return self.eval(kids[1], item) if left is None else left
        if rule == "binop":
            return go.binop(str(kids[1]), self.eval(kids[0], item), self.eval(kids[2], item))
        if rule == "in_":
            return go.contains(self.eval(kids[2], item), self.eval(kids[0], item))
        if rule == "not_in":
            return not go.contains(self.eval(kids[3], item), self.eval(kids[0], item))
        if rule == "range_":
            low, high = self.eval(kids[0], item), self.eval(kids[1], item)
            if not (isinstance(low, int) and isinstance(high, int)) or isinstance(low, bool):
                raise go.Fail("a range wants integers")
            if high - low > ITERATION_BUDGET:
                raise _Budget()
            return list(range(low, high + 1))
        if rule == "call":
            return self.call(node, item)
        if rule == "closure":
            raise go.Fail("a predicate {...} is only valid as a builtin's second argument")
        raise go.Fail(f"unsupported syntax: {rule}")

    def call(self, node: Tree[Token], item: Any) -> Any:
        name = str(node.children[0])
        args = [a for a in node.children[1:] if a is not None]
        if name in _PREDICATE_BUILTINS:
            items = go.list_arg(name, self.eval(args[0], item))
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
            return [e for e in items if go.truth("filter", run(e))]
        if name == "all":
            return all(go.truth("all", run(e)) for e in items)
        if name == "any":
            return any(go.truth("any", run(e)) for e in items)
        if name == "none":
            return not any(go.truth("none", run(e)) for e in items)
        if name == "one":
            return sum(go.truth("one", run(e)) for e in items) == 1
        return sum(go.truth("count", run(e)) for e in items)  # count


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
