"""The code domain's verification: hidden tests in the real sandbox, and programs that try to cheat.

Each cheat is a completion for the tiny HumanEval-format file in tests/data (``add(a, b)``): a
cheat must be judged wrong, never right and never a crash of the grader.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rstar.config import SandboxConfig
from rstar.domains import load_domain
from rstar.domains.code import harness
from rstar.grade import grade, pass_at_k, read_samples, run_grade, summarize

HERE = Path(__file__).parent
TINY = HERE / "data" / "HumanEval.jsonl"
SHARED = HERE.parent.parent / "shared" / "data" / "HumanEval.jsonl"


@pytest.fixture(scope="module")
def tiny():
    return load_domain("code").load(str(TINY))


def _grade(problems, completions: list[str], task: str = "HumanEval/0") -> list[dict]:
    samples = [{"task_id": task, "completion": c, "line": i + 1}
               for i, c in enumerate(completions)]
    return grade(problems, samples, "code", SandboxConfig(timeout_s=2.0))


def test_right_and_wrong_bodies(tiny):
    right, wrong, crash = "    return a + b\n", "    return a - b\n", "    return a / 0\n"
    res = _grade(tiny, [right, wrong, crash])
    assert [r["passed"] for r in res] == [True, False, False]
    assert res[1]["result"] == "a test failed"


# Tasks whose tests lean on a builtin, a module and a prompt helper, so that patching each
# would fool a harness that runs prompt + completion + tests in one namespace (HumanEval's).
TASKS = [
    {"task_id": "T/abs", "prompt": "def half(x: float) -> float:\n    \"\"\"x / 2\"\"\"\n",
     "test": "def check(candidate):\n    assert abs(candidate(3.0) - 1.5) < 1e-9\n",
     "entry_point": "half"},
    {"task_id": "T/isclose", "prompt": "import math\n\ndef half(x):\n    \"\"\"x / 2\"\"\"\n",
     "test": ("def check(candidate):\n    import math\n    r = candidate(1.0)\n"
              "    assert math.isclose(r, 0.5)\n"),
     "entry_point": "half"},
    {"task_id": "T/helper",
     "prompt": "def double(x):\n    return 2 * x\n\ndef half(x):\n    \"\"\"x / 2\"\"\"\n",
     "test": "def check(candidate):\n    assert double(candidate(4.0)) == 4.0\n",
     "entry_point": "half"},
]

WRONG = "\ndef {f}(*args):\n    return 0\n"
# (task, cheat): each answers wrong, and each passes the naive harness (checked below).
FOOLING = {
    "exit_before_tests": ("HumanEval/0", "import sys\nsys.exit(0)\n"),
    "exit_inside_the_function": ("HumanEval/0", "def add(a, b):\n    raise SystemExit(0)\n"),
    "equal_to_everything": ("HumanEval/0", "class Any:\n    def __eq__(self, other):\n"
                            "        return True\ndef add(a, b):\n    return Any()\n"),
    "int_subclass": ("HumanEval/0", "class I(int):\n    def __eq__(self, other):\n"
                     "        return True\ndef add(a, b):\n    return I(0)\n"),
    "patched_builtin": ("T/abs", "import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG),
    "patched_module": ("T/isclose", "import math\nmath.isclose = lambda *a, **k: True\n" + WRONG),
    "patched_module_at_call_time": ("T/isclose", "def half(x):\n    import math\n"
                                    "    math.isclose = lambda *a, **k: True\n    return 0\n"),
    "redefined_prompt_helper": ("T/helper", "def double(x):\n    return 4.0\n" + WRONG),
}
# Right answers that also reach for what the rules close: the probe itself must fail them.
RIGHT = "\ndef add(a, b):\n    return a + b\n"
PROBES = {
    "frames": "import sys\nprint(sys._getframe(1).f_locals)\n",
    "traceback_frames": ("try:\n    raise ValueError\nexcept ValueError as e:\n"
                         "    print(e.__traceback__.tb_frame.f_back.f_locals)\n"),
    "generator_frames": "def g():\n    yield 1\nprint(g().gi_frame)\n",
    "heap_walk": "import gc\nprint(len(gc.get_objects()))\n",
    "process_memory": "open('/proc/self/mem', 'rb')\n",
    "signal_handler_frames": ("import signal\n"
                              "signal.signal(signal.SIGUSR1, lambda s, f: print(f.f_back.f_locals))\n"
                              "signal.raise_signal(signal.SIGUSR1)\n"),
    "rebuilt_signal_module": ("import _imp, importlib.machinery as m\n"
                              "s = _imp.create_builtin(m.ModuleSpec('_signal', m.BuiltinImporter))\n"
                              "s.signal(s.SIGUSR1, lambda n, f: print(f.f_back.f_locals))\n"
                              "s.raise_signal(s.SIGUSR1)\n"),
    "trace_function": "import sys\nsys.settrace(lambda *a: None)\n",
}
# Wrong answers that try to print the verdict marker or to run out the clock.
OTHERS = {
    "prints_a_marker": "print('rstar-pass-' + '0' * 32)\n" + WRONG.format(f="add"),
    "marker_from_main_module": (
        "import sys\nfor v in list(vars(sys.modules['__main__']).values()):\n"
        "    for c in getattr(getattr(v, '__code__', None), 'co_consts', ()):\n"
        "        if isinstance(c, str) and c.startswith('rstar-pass-'):\n"
        "            print(c)\n" + WRONG.format(f="add")),
    "swaps_stdout": "import sys, io\nsys.stdout = io.StringIO()\n" + WRONG.format(f="add"),
    "loops_until_timeout": "def add(a, b):\n    while True:\n        pass\n",
    "loops_at_definition": "while True:\n    pass\n",
    "ignores_the_alarm": ("import signal\ntry:\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                          "except OSError:\n    pass\nwhile True:\n    pass\n"),
}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("tasks") / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    return tiny + load_domain("code").load(str(path))


def _naive(problems, task: str, completion: str) -> bool:
    """HumanEval's own harness, without the rules: one namespace, passed iff the job ends ok."""
    from sandbox import Sandbox

    p = {q.meta.get("task_id", q.id): q for q in problems}[task]
    g = harness.parse_gold(p.answer)
    with Sandbox(timeout_s=2.0, workers=1) as sb:
        res = sb.run(p.question + completion + "\n" + g["test"] + f"\ncheck({g['entry_point']})\n")
    return res.ok


def _grade_each(problems, cases: dict[str, tuple[str, str]]) -> dict[str, dict]:
    samples = [{"task_id": t, "completion": c, "line": i + 1}
               for i, (t, c) in enumerate(cases.values())]
    res = grade(problems, samples, "code", SandboxConfig(timeout_s=2.0))
    return dict(zip(cases, res))


def test_cheats_that_fool_a_naive_harness_are_judged_wrong(tasks):
    cases = {k: (t, c.format(f="half")) for k, (t, c) in FOOLING.items()}
    fooled = [k for k, (t, c) in cases.items() if _naive(tasks, t, c)]
    assert fooled == list(cases), "control: each cheat passes HumanEval's plain harness"
    verdicts = _grade_each(tasks, cases)
    assert not [k for k, r in verdicts.items() if r["passed"]], verdicts
    honest = _grade_each(tasks, {"abs": ("T/abs", "    return x / 2\n"),
                                 "isclose": ("T/isclose", "    return x / 2\n"),
                                 "helper": ("T/helper", "    return double(x) / 4\n")})
    assert all(r["passed"] for r in honest.values()), honest


def test_probes_of_frames_memory_and_signals_fail_even_a_right_answer(tasks):
    verdicts = _grade_each(tasks, {k: ("HumanEval/0", c + RIGHT) for k, c in PROBES.items()})
    assert not [k for k, r in verdicts.items() if r["passed"]], verdicts
    assert _grade_each(tasks, {"plain": ("HumanEval/0", RIGHT)})["plain"]["passed"]


def test_markers_stdout_and_timeouts_do_not_pass(tasks):
    verdicts = _grade_each(tasks, {k: ("HumanEval/0", c) for k, c in OTHERS.items()})
    assert not [k for k, r in verdicts.items() if r["passed"]], verdicts


def test_a_right_solution_with_helpers_prints_and_a_main_guard_passes(tiny):
    # namedtuple reaches for frames; locked, it gets a shallow-stack error and carries on.
    ok = ("from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
          "def add(a, b):\n    p = P(a, b)\n    print('debug', p)\n    return p.x + p.y\n"
          "if __name__ == '__main__':\n    raise SystemExit(1)\n")
    res = _grade(tiny, [ok, "def add(a, b):\n    return 0\n"])
    assert [r["passed"] for r in res] == [True, False], res


def test_bad_problems_say_which(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": "T/0", "prompt": "def f():\n", "test": "",
                               "entry_point": "f"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1 \(T/0\).*test"):
        load_domain("code").load(str(bad))
    bad.write_text(json.dumps({"task_id": "T/1", "prompt": "def f():\n",
                               "test": "def check(candidate):\n    pass\n"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1 \(T/1\).*entry_point"):
        load_domain("code").load(str(bad))
    with pytest.raises(ValueError, match="no check"):
        harness.parse_gold(harness.make_gold("assert True", "f"), "p")
    rows = [{"task_id": f"T/{i}", "prompt": "def f(x):\n", "entry_point": "f",
             "test": "def check(candidate):\n    assert candidate(2) == 4\n",
             "canonical_solution": body} for i, body in
            enumerate(["    return 2 * x\n", "    return x + 1\n", "    return x * x\n"])]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"bad.jsonl: the tests of 1 problem\(s\) fail their "
                                         r"own canonical_solution: T/1$"):
        load_domain("code").load(str(bad))


def test_samples_bad_lines_and_unknown_tasks(tmp_path, tiny):
    s = tmp_path / "s.jsonl"
    s.write_text('{"task_id": "HumanEval/0", "completion": "    return a + b\\n"}\n'
                 '{"task_id": "HumanEval/0"}\n')
    with pytest.raises(ValueError, match=r"s.jsonl:2"):
        read_samples(s)
    s.write_text('{"task_id": "Nope/3", "completion": ""}\n')
    with pytest.raises(ValueError, match=r"s.jsonl:1: unknown task_id 'Nope/3'"):
        grade(tiny, read_samples(s), "code", SandboxConfig(), str(s))


def test_pass_at_k():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    s = summarize([{"task_id": "a", "passed": True}, {"task_id": "a", "passed": False},
                   {"task_id": "b", "passed": False}, {"task_id": "b", "passed": False}],
                  ks=(1, 2, 3))
    assert s["pass@1"] == pytest.approx(0.25) and s["pass@2"] == pytest.approx(0.5)
    assert "pass@3" not in s


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data/HumanEval.jsonl")
def test_humaneval_canonical_solutions_pass_and_shifted_ones_fail(tmp_path, monkeypatch):
    monkeypatch.setenv("RSTAR_DATA_DIR", str(SHARED.parent))
    rows = [json.loads(line) for line in SHARED.read_text().splitlines()]
    assert len(rows) == 164
    samples = tmp_path / "samples.jsonl"
    # Every canonical solution, then each task given the next task's solution (wrong).
    lines = [{"task_id": r["task_id"], "completion": r["canonical_solution"]} for r in rows]
    lines += [{"task_id": r["task_id"], "completion": rows[(i + 1) % 164]["canonical_solution"]}
              for i, r in enumerate(rows)]
    samples.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "results.jsonl"
    summary = run_grade("humaneval", None, str(samples), str(out))
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == 328 and all(set(r) >= {"task_id", "passed"} for r in results)
    assert all(r["passed"] for r in results[:164]), [r for r in results[:164] if not r["passed"]]
    assert sum(r["passed"] for r in results[164:]) <= 2   # a neighbour's code rarely fits
    assert summary["domain"] == "code" and summary["tasks"] == 164
    assert summary["pass@1"] == pytest.approx(sum(r["passed"] for r in results) / 328)


def test_rstar_grade_cli_for_code_and_math(tmp_path, monkeypatch, capsys):
    from rstar.cli import main

    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return a + b\\n"}\n'
                       '{"task_id": "HumanEval/1", "completion": "    return s\\n"}\n')
    out = tmp_path / "r.jsonl"
    assert main(["grade", "--data", str(TINY), "--domain", "code", "--samples", str(samples),
                 "--out", str(out)]) == 0
    assert [json.loads(x)["passed"] for x in out.read_text().splitlines()] == [True, False]
    assert "1 of 2 samples passed" in capsys.readouterr().out
    monkeypatch.setenv("RSTAR_DATA_DIR", str(HERE / "data"))
    from rstar.data import load_benchmark

    amc = load_benchmark("amc23")
    samples.write_text("".join(json.dumps({"id": p.id, "completion": f"so \\boxed{{{a}}}"}) + "\n"
                               for p, a in zip(amc, [p.answer for p in amc][::-1])))
    assert main(["grade", "--benchmark", "amc23", "--samples", str(samples),
                 "--out", str(out)]) == 0
    assert [json.loads(x)["passed"] for x in out.read_text().splitlines()] == [False, False]
    samples.write_text("".join(json.dumps({"id": p.id, "completion": f"\\boxed{{{p.answer}}}"})
                               + "\n" for p in amc))
    main(["grade", "--benchmark", "amc23", "--samples", str(samples), "--out", str(out)])
    assert all(json.loads(x)["passed"] for x in out.read_text().splitlines())


def test_evaluate_grades_code_answers_by_hidden_tests(trained_tiny):
    """The held-out measures of ``rstar eval``/``evolve`` on generated code tasks, with the
    code teacher as the policy: votes group trajectories by their example's output, and picks
    from the search (run without the tests) are graded by running the tests afterwards."""
    from actors.engines.factory import make_scorer
    from rstar.config import EngineConfig
    from rstar.evaluate import evaluate
    from tree.steps import StepFormat

    domain, fmt = load_domain("code"), StepFormat()
    problems = domain.problems(8, 3, (1, 2, 3, 4))
    scorer = make_scorer(EngineConfig(kind="hf", model=str(trained_tiny[1])), fmt)
    clean = evaluate(problems, fmt, SandboxConfig(), domain.teacher(0.0, fmt), scorer, n=2,
                     candidates=2, rollouts=4, domain="code")
    assert clean["greedy_acc"] == clean["maj_acc"] == clean["search_acc"] == 1.0
    noisy = evaluate(problems, fmt, SandboxConfig(), domain.teacher(0.5, fmt), scorer, n=4,
                     candidates=2, rollouts=8, domain="code", seed=1)
    assert noisy["greedy_acc"] < 1.0   # slips are caught by the tests, whatever the answer says
    assert 0 < noisy["search_acc"] and 0 < noisy["maj_acc"]


def test_rstar_eval_on_humaneval_runs_end_to_end(trained_tiny, tmp_path, monkeypatch):
    from rstar.cli import main

    monkeypatch.setenv("RSTAR_DATA_DIR", str(HERE / "data"))
    policy, ppm = map(str, trained_tiny)
    assert main(["eval", "--benchmark", "humaneval", "--policy", policy, "--ppm", ppm, "-n", "2",
                 "--rollouts", "4", "--candidates", "2", "--max-tokens", "32", "--out",
                 str(tmp_path), "--quiet"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["benchmark"] == "humaneval" and res["problems"] == 2
    assert {"greedy_acc", "maj_acc", "best_of_n_acc", "search_acc"} <= set(res)
    rows = [json.loads(x) for x in (tmp_path / "per_problem.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["humaneval/HumanEval/0", "humaneval/HumanEval/1"]


def test_code_fast_preset_runs_the_loop(tmp_path):
    """``rstar evolve --config configs/code-fast.yaml``: both rounds on the code domain, with a
    tiny model whose tokenizer was trained on code-task texts."""
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([str(Path(sys.executable).with_name("rstar")), "evolve", "--workdir",
                        str(tmp_path), "--config", str(HERE.parent / "configs" / "code-fast.yaml"),
                        "--quiet"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["round"] for row in summary] == [1, 2]
    assert summary[0]["train_solved_frac"] > 0.5   # the teacher's search, graded by the tests
    assert (tmp_path / "summary.png").exists()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "base")
    assert len(tok.tokenize("def transform_list(xs):")) < 10   # learned from code, not arith


def test_generated_tasks_hidden_tests_fail_one_clause_slips():
    import random

    from rstar.domains.code.tasks import (_behaviour, _input, make_task, number_slips,
                                          operation_slips, parse_prompt)

    rng, told, caught = random.Random(0), 0, 0
    for i in range(80):
        t = make_task(1 + i % 8, rng)
        name, var, clauses, example = parse_prompt(t.prompt)
        assert (name, var, len(clauses)) == (t.name, t.var, len(t.ops))
        assert eval(example) == t.example and len(t.hidden) == 8
        right = [op.code(t.var) for op in t.ops]
        fresh = [_input(t.kind, rng) for _ in range(100)]
        for j, line in enumerate(right):
            for wrong in (*number_slips(line), *operation_slips(line), None):
                m = right[:j] + ([wrong] if wrong else []) + right[j + 1:]
                if _behaviour(t.kind, m, fresh) != _behaviour(t.kind, right, fresh):
                    told += 1   # a slip that some input exposes: the hidden tests should too
                    caught += (_behaviour(t.kind, m, list(t.hidden))
                               != _behaviour(t.kind, right, list(t.hidden)))
    assert told > 1000 and caught / told > 0.97, (caught, told)


def test_the_code_teacher_solves_what_its_search_verifies(tmp_path):
    from rstar.config import GeneratedConfig, SearchRunConfig
    from rstar.search import run_search

    clean = run_search(SearchRunConfig(domain="code", problems=16, generated=GeneratedConfig(
        teacher_error_rate=0.0)), tmp_path / "clean.parquet", show_progress=False)
    assert clean["search_solved"] == clean["single_sample_solved"] == 1.0
    noisy = run_search(SearchRunConfig(domain="code", problems=32), tmp_path / "noisy.parquet",
                       show_progress=False)
    assert noisy["single_sample_solved"] < noisy["search_solved"] and noisy["dead_nodes"] > 0
