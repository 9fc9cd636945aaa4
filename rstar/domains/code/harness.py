"""The test harness of the code domain: a candidate program against hidden unit tests, in the sandbox.

A candidate is hostile to its own tests (it is model-written, and search rewards whatever passes).
The harness below is the whole program a verification job runs; the candidate's source, the
tests and a fresh random marker are its call arguments. A candidate passes only if the job ends
normally *and* prints the marker, which the harness prints once every test has passed. The
rules that make that hard to fake, each with a test in tests/test_code_domain.py:

- The harness raises ``sandbox.lock_introspection`` first, so the candidate cannot reach the
  frames (tests, marker, verdict) or the process memory; its source is not in any file.
- The candidate runs in its own namespace with a copy of the builtins, the tests in another with
  a pristine copy and the prompt's own helpers: patching ``builtins`` or redefining ``check``, an
  assert helper or a prompt helper changes nothing the tests use. Modules loaded before the candidate must be untouched after it and after each
  call (``math.isclose = ...`` fails).
- ``sys.exit``/``SystemExit`` and other non-``Exception`` escapes are a failure, never an end;
  ``os._exit`` and signals end the job without the marker; loops hit the sandbox's timeout.
- Return values must be built-in values (an object whose ``__eq__`` says yes to everything fails).
- The verdict lives in control flow, not in state: any failure raises through the harness to
  ``SystemExit(3)``; nothing the candidate could mutate decides it.

Known limit: a candidate that rebuilds the ``_signal`` module through ``_imp`` can install a
handler and read (not write) frame locals in this process; tampering with the harness's state
that way needs more than the listed cheats, and a seccomp filter would close it (not done).
"""

from __future__ import annotations

import json
import secrets

_HARNESS = r'''
def _rstar_verify(setup, source, tests, entry, marker):
    import builtins, sys, types
    sys.audit("sandbox.lock_introspection")
    BaseExc, Exc, SysExit, Module = BaseException, Exception, SystemExit, types.ModuleType
    _type, _dict, _vars, _list, _callable = type, dict, vars, list, callable
    _compile, _exec, _missing = compile, exec, object()
    out, err = sys.stdout.write, sys.stderr.write   # bound: swapping sys.stdout hides nothing
    modules = sys.modules
    atoms = (int, float, complex, str, bytes, bool, type(None))
    seqs = (list, tuple, set, frozenset)
    pristine = _dict(builtins.__dict__)
    watched = [(n, m, _dict(_vars(m))) for n, m in _list(modules.items())
               if _type(m) is Module and n not in ("__main__", "sys", "builtins")]

    class Abort(BaseExc):
        pass

    def intact():
        for name, mod, attrs in watched:
            if modules.get(name) is not mod:
                return False
            d = _vars(mod)
            for k, v in attrs.items():
                if d.get(k, _missing) is not v:
                    return False
        return True

    def plain(v, depth=0):
        t = _type(v)
        if t in atoms:
            return True
        if depth > 40:
            return False
        if t in seqs:
            return all(plain(x, depth + 1) for x in v)
        if t is dict:
            return all(plain(k, depth + 1) and plain(x, depth + 1) for k, x in v.items())
        return False

    def run():
        # The tests see the prompt's own helpers (HumanEval's tests call some), defined here
        # before the candidate runs, and the entry point only as the guarded candidate.
        tns = {"__name__": "__tests__", "__builtins__": _dict(pristine)}
        try:   # a prompt that is only a signature is no program by itself: then no setup
            prompt = _compile(setup, "<prompt>", "exec") if setup else None
        except SyntaxError:
            prompt = None
        if prompt is not None:
            _exec(prompt, tns)
        cand = {"__name__": "__candidate__", "__builtins__": _dict(pristine)}
        try:
            if prompt is not None:
                _exec(prompt, cand)
            _exec(_compile(source, "<solution>", "exec"), cand)
        except BaseExc:
            raise Abort("the solution raised while being defined")
        fn = cand.get(entry)
        if not _callable(fn):
            raise Abort("the solution defines no function " + entry)
        if not intact():
            raise Abort("the solution changed a module the tests may use")

        def candidate(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except Exc:
                if not intact():
                    raise Abort("the solution changed a module the tests may use")
                raise   # an ordinary exception is the tests' to judge
            except BaseExc:
                raise Abort("the solution tried to end the process or escape the tests")
            if not intact():
                raise Abort("the solution changed a module the tests may use")
            if not plain(result):
                raise Abort("the solution returned a value that is not a built-in type")
            return result

        tns[entry] = candidate
        _exec(_compile(tests, "<tests>", "exec"), tns)
        check = tns.get("check")
        if not _callable(check):
            raise Abort("the tests define no check(candidate)")
        check(candidate)

    try:
        run()
    except Abort as e:
        err("verdict: " + e.args[0] + "\n")
        raise SysExit(3)
    except BaseExc:
        err("verdict: a test failed\n")
        raise SysExit(3)
    out("\n" + marker + "\n")
'''


def parse_gold(gold: str, where: str = "gold") -> dict:
    """A code problem's hidden tests: JSON ``{"test", "entry_point", "prompt"?}``; raises
    ValueError naming ``where`` when a field is missing or the tests define no ``check``."""
    try:
        g = json.loads(gold)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: not a code problem's tests (expected JSON with test and "
                         "entry_point)") from None
    if not isinstance(g, dict):
        raise ValueError(f"{where}: expected a JSON object with test and entry_point")
    for key in ("test", "entry_point"):
        if not isinstance(g.get(key), str) or not g[key].strip():
            raise ValueError(f"{where}: missing or empty {key!r}")
    if not g["entry_point"].isidentifier():
        raise ValueError(f"{where}: entry_point {g['entry_point']!r} is not a Python name")
    if "def check(" not in g["test"]:
        raise ValueError(f"{where}: the tests define no check(candidate)")
    return {"test": g["test"], "entry_point": g["entry_point"], "prompt": g.get("prompt") or ""}


def make_gold(test: str, entry_point: str, prompt: str = "") -> str:
    """The gold string of a code problem (what ``parse_gold`` reads)."""
    return json.dumps({"test": test, "entry_point": entry_point, "prompt": prompt})


def test_program(program: str, gold: str) -> tuple[str, str]:
    """(the verification job's source, its marker): ``program`` run against ``gold``'s tests."""
    g = parse_gold(gold)
    marker = "rstar-pass-" + secrets.token_hex(16)
    call = (f"_rstar_verify({g['prompt']!r}, {program!r}, {g['test']!r}, "
            f"{g['entry_point']!r}, {marker!r})\n")
    return _HARNESS + call, marker


def passed(outcome, marker: str) -> bool:
    """Whether a verification job's outcome says every test passed."""
    return bool(outcome.ok) and marker in outcome.stdout.splitlines()
