"""Pure policy evaluation: compile CEL once per version hash, evaluate rules in order.

No database, no Django: services hand in plain data. Every failure is a :class:`PolicyError`
(compilation) or :class:`EvaluationError` (runtime), which the services turn into
``invalid_argument`` — an evaluation that goes wrong never produces ``allow`` (fail closed).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cel
import jsonschema
import jsonschema_rs
import referencing

VARIABLES = ("inputs", "decision", "now")
_POSITION_RE = re.compile(r"<input>:(\d+):(\d+)")
# Names bound by comprehension macros (``list.exists(x, ...)``) are reported as variables too.
_BINDER_RE = re.compile(r"\b(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_CACHE_SIZE = 512
_UNDEFINED_FLAT_RE = re.compile(r"'__(inputs|decision)__(\w+)'")


class PolicyError(ValueError):
    """A policy version that cannot be published (bad CEL, bad schema)."""

    def __init__(self, message: str, *, rule: str | None = None, position: dict[str, int] | None = None):
        super().__init__(message)
        self.rule = rule
        self.position = position


class EvaluationError(ValueError):
    """An evaluation that failed: schema violation, missing variable, type error."""

    def __init__(self, message: str, *, rule: str | None = None, kind: str = "evaluation_error"):
        super().__init__(message)
        self.rule = rule
        self.kind = kind


@dataclass(frozen=True)
class CompiledRule:
    name: str
    program: Any
    outcome: str
    message: str


@dataclass(frozen=True)
class CompiledPolicy:
    rules: tuple[CompiledRule, ...]
    default_outcome: str
    default_message: str
    validator: Any  # jsonschema validator (messages) or None
    fast_validator: Any  # jsonschema_rs validator (the per-call check) or None
    # Only the variables some rule mentions are converted into CEL values: the conversion, not
    # the evaluation, is what costs time per call.
    uses: frozenset[str]
    # For ``inputs`` and ``decision``: the top-level keys the rules read, when every reference is
    # a plain ``name.key`` (None = the rules need the whole object). Only those keys are converted.
    fields: dict[str, frozenset[str] | None]
    # Roots whose ``root.key`` references were compiled as flat variables ``__root__key`` (a map
    # costs the binding several microseconds to convert; a scalar far less).
    flat: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Result:
    outcome: str
    rule: str | None
    message: str


def compile_condition(rule_name: str, source: str) -> Any:
    try:
        return cel.compile(source)
    except Exception as exc:  # the binding raises ValueError with a position; be defensive
        text = str(exc)
        match = _POSITION_RE.search(text)
        position = {"line": int(match.group(1)), "column": int(match.group(2))} if match else None
        where = f" at line {position['line']}, column {position['column']}" if position else ""
        first = text.splitlines()[0] if text else type(exc).__name__
        raise PolicyError(
            f"rule {rule_name!r}: the condition does not compile{where}: {first}",
            rule=rule_name,
            position=position,
        ) from None


_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def _refuse_remote_refs(schema: Any, path: str) -> None:
    """Only references inside the schema itself (``#...``): a remote one would make the server fetch
    an admin-chosen URL on every compilation (SSRF) and let its content change a frozen version."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in _REF_KEYWORDS and isinstance(value, str) and not value.startswith("#"):
                raise PolicyError(
                    f"inputs_schema is not a valid JSON Schema at {path or '(root)'}: {key} {value[:100]!r} is not a "
                    "local reference; only references inside the schema (e.g. #/$defs/name) are allowed"
                )
            _refuse_remote_refs(value, f"{path}/{key}" if path else str(key))
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            _refuse_remote_refs(item, f"{path}/{index}" if path else str(index))


def _no_retrieval(uri: str) -> Any:
    # Belt and braces behind _refuse_remote_refs: neither validator may ever fetch anything.
    raise ValueError(f"{uri[:100]} is not retrieved: inputs_schema may only use local references")


def check_schema(schema: Any) -> Any:
    """A validator for a JSON Schema (Draft 2020-12), or PolicyError naming what is wrong."""
    if schema is None:
        return None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise PolicyError(f"inputs_schema is not a valid JSON Schema at {path}: {exc.message}") from None
    _refuse_remote_refs(schema, "")
    registry: referencing.Registry[Any] = referencing.Registry(retrieve=_no_retrieval)  # type: ignore[call-arg]
    return jsonschema.Draft202012Validator(schema, registry=registry)


def fast_validator(schema: Any) -> Any:
    """The jsonschema-rs validator of a schema :func:`check_schema` accepted; PolicyError when it
    cannot be built (a dangling local reference such as ``#/nope``, a regex it cannot compile)."""
    if schema is None:
        return None
    try:
        return jsonschema_rs.Draft202012Validator(schema, retriever=_no_retrieval)
    except Exception as exc:  # jsonschema_rs.ValidationError (a ValueError) or anything else it raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyError(f"inputs_schema cannot be used: {first[:300]}") from None


_FIELD_AFTER_RE = re.compile(r"\s*\.\s*([A-Za-z_]\w*)")


def _keys_read(source: str, root: str) -> set[str] | None:
    """The keys of ``root`` a condition reads, or None when it may read more than ``root.key``.

    Conservative: any occurrence of the name not followed by ``.key`` (indexing, passing the whole
    object, a binder of the same name) means "all keys". A superset is always safe.
    """
    keys: set[str] = set()
    for match in re.finditer(rf"\b{root}\b", source):
        field = _FIELD_AFTER_RE.match(source, match.end())
        if field is None:
            return None
        keys.add(field.group(1))
    return keys


# CEL string literals (triple-quoted first), so rewriting never touches text inside quotes.
_LITERAL_RE = re.compile(
    "|".join(
        (
            r'"""(?:\\.|[^\\])*?"""',
            r"'''(?:\\.|[^\\])*?'''",
            r'"(?:\\.|[^"\\\n])*"',
            r"'(?:\\.|[^'\\\n])*'",
        )
    ),
    re.S,
)
_RAW_OR_BYTES_RE = re.compile(r"(?i)(?<![\w.])[rb]{1,2}[\"']")


def flat_name(root: str, key: str) -> str:
    return f"__{root}__{key}"


def _flatten_code(code: str, root: str) -> str | None:
    out: list[str] = []
    pos = 0
    for match in re.finditer(rf"\b{root}\s*\.\s*([A-Za-z_]\w*)", code):
        before = code[: match.start()].rstrip()
        if before.endswith(".") or (match.start() > 0 and code[match.start() - 1] == "_"):
            return None  # a field named like the root (``x.inputs.y``): not the variable
        out += [code[pos : match.start()], flat_name(root, match.group(1))]
        pos = match.end()
    out.append(code[pos:])
    flattened = "".join(out)
    return None if re.search(rf"\b{root}\b", flattened) else flattened


def flatten_source(source: str, root: str) -> str | None:
    """``root.key`` → ``__root__key`` outside string literals; None unless every reference is that."""
    if _RAW_OR_BYTES_RE.search(source):
        return None  # raw and bytes literals: do not guess where they end
    out: list[str] = []
    pos = 0
    for literal in _LITERAL_RE.finditer(source):
        code = _flatten_code(source[pos : literal.start()], root)
        if code is None:
            return None
        out += [code, literal.group(0)]
        pos = literal.end()
    code = _flatten_code(source[pos:], root)
    if code is None:
        return None
    out.append(code)
    return "".join(out)


def _flattened_programs(
    sources: list[str], roots: tuple[str, ...]
) -> tuple[list[Any], frozenset[str]] | None:
    """Programs with ``roots`` flattened in every rule, or None if any rule cannot be (e.g. has())."""
    flattened = list(sources)
    for root in roots:
        for i, text in enumerate(flattened):
            new = flatten_source(text, root)
            if new is None:
                return None
            flattened[i] = new
    try:
        return [cel.compile(text) for text in flattened], frozenset(roots)
    except Exception:
        return None


def compile_policy(content: dict[str, Any]) -> CompiledPolicy:
    """Compile a policy version's content (rules, default_outcome, inputs_schema)."""
    compiled: list[CompiledRule] = []
    uses: set[str] = set()
    fields: dict[str, set[str] | None] = {"inputs": set(), "decision": set()}
    for rule in content.get("rules") or []:
        program = compile_condition(rule["name"], rule["when"])
        binders = set(_BINDER_RE.findall(rule["when"]))
        unknown = sorted(set(program.variables()) - set(VARIABLES) - binders)
        if unknown:
            # A typo such as ``input.x`` would otherwise fail every evaluation at run time.
            raise PolicyError(
                f"rule {rule['name']!r}: unknown variable {', '.join(unknown)}; conditions see only "
                "inputs, decision and now",
                rule=rule["name"],
            )
        uses.update(name for name in program.variables() if name in VARIABLES)
        for root, keys in fields.items():
            if keys is not None:
                read = _keys_read(rule["when"], root)
                fields[root] = None if read is None else keys | read
        compiled.append(CompiledRule(rule["name"], program, rule["outcome"], rule.get("message") or ""))
    flat: frozenset[str] = frozenset()
    sources = [rule["when"] for rule in content.get("rules") or []]
    for roots in (("inputs", "decision"), ("inputs",), ("decision",)):
        candidates = tuple(r for r in roots if r in uses and fields[r] is not None)
        if not candidates:
            continue
        attempt = _flattened_programs(sources, candidates)
        if attempt is not None:
            programs, flat = attempt
            compiled = [
                CompiledRule(rule.name, program, rule.outcome, rule.message)
                for rule, program in zip(compiled, programs, strict=True)
            ]
            break
    return CompiledPolicy(
        flat=flat,
        rules=tuple(compiled),
        default_outcome=content.get("default_outcome") or "deny",
        default_message=content.get("default_message") or "no rule matched; the default outcome applies",
        validator=check_schema(content.get("inputs_schema")),
        # The Rust validator answers "valid?" in well under a microsecond; the Python one, only
        # asked when the answer is no, writes the message the agent reads.
        fast_validator=fast_validator(content.get("inputs_schema")),
        uses=frozenset(uses),
        fields={root: (None if keys is None else frozenset(keys)) for root, keys in fields.items()},
    )


_cache: OrderedDict[str, CompiledPolicy] = OrderedDict()
_cache_lock = threading.Lock()


def compiled_for(hash_: str, content: dict[str, Any]) -> CompiledPolicy:
    """The compiled policy for a frozen version, compiled once per process per hash.

    Keyed by the content hash, so publishing a new version can never be served a stale program;
    drafts (no stable hash) are compiled fresh by the caller.
    """
    # The hit path takes no lock (a dict read is atomic under the GIL); eviction is oldest-first,
    # which with a few hundred entries and rarely changing versions is as good as LRU.
    hit = _cache.get(hash_)
    if hit is not None:
        return hit
    compiled = compile_policy(content)
    with _cache_lock:
        _cache[hash_] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def cache_put(hash_: str, compiled: CompiledPolicy) -> None:
    with _cache_lock:
        _cache[hash_] = compiled


def cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def cache_contains(hash_: str) -> bool:
    with _cache_lock:
        return hash_ in _cache


# What a schema keyword's failure means, with the keyword's (admin-written, numeric) limit where it
# has one. Built from the keyword and the path only: jsonschema's own messages quote the offending
# value, which may be a password or a token and would land in the trace and the response.
_BOUND_PROBLEMS = {
    "maxLength": "too long",
    "minLength": "too short",
    "maximum": "too large",
    "exclusiveMaximum": "too large",
    "minimum": "too small",
    "exclusiveMinimum": "too small",
    "multipleOf": "not a multiple",
    "maxItems": "too many items",
    "minItems": "too few items",
    "maxProperties": "too many properties",
    "minProperties": "too few properties",
}
_PROBLEMS = {
    "enum": "not one of the allowed values",
    "const": "not the allowed value",
    "pattern": "does not match the pattern",
    "uniqueItems": "has duplicate items",
    "additionalProperties": "has properties the schema does not allow",
    "unevaluatedProperties": "has properties the schema does not allow",
    "additionalItems": "has more items than the schema allows",
    "unevaluatedItems": "has more items than the schema allows",
    "propertyNames": "has a property name the schema does not allow",
    "dependentRequired": "is missing a property another property requires",
    "not": "matches a schema it must not match",
}


def _schema_problem(error: jsonschema.ValidationError) -> str:
    keyword = str(error.validator)
    limit = error.validator_value
    if keyword in _BOUND_PROBLEMS and isinstance(limit, int | float) and not isinstance(limit, bool):
        return f"{_BOUND_PROBLEMS[keyword]} ({keyword} {limit})"
    if keyword == "type":
        expected = limit if isinstance(limit, str) else " or ".join(str(t) for t in limit)
        return f"must be of type {expected} (type)"
    if keyword == "required" and isinstance(limit, list) and isinstance(error.instance, dict):
        # Property names come from the schema, not from the inputs.
        missing = [str(name) for name in limit if name not in error.instance]
        return f"missing required property {', '.join(repr(m) for m in missing)} (required)"
    if keyword == "format":
        return f"is not a valid {limit} (format)"
    return f"{_PROBLEMS.get(keyword, 'does not match the schema')} ({keyword})"


def validate_inputs(policy: CompiledPolicy, inputs: dict[str, Any]) -> None:
    if policy.validator is None or policy.fast_validator.is_valid(inputs):
        return
    error = next(iter(sorted(policy.validator.iter_errors(inputs), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise EvaluationError(
            f"inputs{where}: {_schema_problem(error)}; the policy's inputs_schema refused it",
            kind="schema_violation",
        )


def evaluate(
    policy: CompiledPolicy, *, inputs: dict[str, Any], decision: dict[str, Any], now: datetime
) -> Result:
    """First rule whose condition is true decides; otherwise the default outcome."""
    validate_inputs(policy, inputs)
    values: dict[str, Any] = {"inputs": inputs, "decision": decision, "now": now}
    variables: dict[str, Any] = {}
    for name in policy.uses:
        value = values[name]
        keys = policy.fields.get(name)
        if name in policy.flat and keys is not None and isinstance(value, dict):
            # A key that is absent stays undefined: reading it fails as "missing variable".
            for key in keys:
                if key in value:
                    variables[flat_name(name, key)] = value[key]
            continue
        if keys is not None and isinstance(value, dict):
            value = {k: value[k] for k in keys if k in value}
        variables[name] = value
    context = cel.Context(variables=variables)
    for rule in policy.rules:
        try:
            matched = rule.program.execute(context)
        except KeyError as exc:
            raise EvaluationError(
                f"rule {rule.name!r}: missing variable {exc.args[0] if exc.args else exc}: the inputs do not "
                "have it; pass it, or guard the condition with has()",
                rule=rule.name,
                kind="missing_variable",
            ) from None
        except RuntimeError as exc:
            undefined = _UNDEFINED_FLAT_RE.search(str(exc))
            if undefined is None:
                raise EvaluationError(
                    f"rule {rule.name!r}: evaluation failed: {str(exc).splitlines()[0]}", rule=rule.name
                ) from None
            raise EvaluationError(
                f"rule {rule.name!r}: missing variable {undefined.group(2)}: the {undefined.group(1)} do not "
                "have it; pass it, or guard the condition with has()",
                rule=rule.name,
                kind="missing_variable",
            ) from None
        except TypeError as exc:
            raise EvaluationError(
                f"rule {rule.name!r}: type error: {str(exc).split('.')[0]}; check the types of the inputs",
                rule=rule.name,
                kind="type_error",
            ) from None
        except Exception as exc:
            raise EvaluationError(
                f"rule {rule.name!r}: evaluation failed: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                rule=rule.name,
            ) from None
        if matched is True:
            return Result(rule.outcome, rule.name, rule.message)
        if matched is not False:
            raise EvaluationError(
                f"rule {rule.name!r}: the condition must be true or false, got {type(matched).__name__}",
                rule=rule.name,
                kind="type_error",
            )
    return Result(policy.default_outcome, None, policy.default_message)
