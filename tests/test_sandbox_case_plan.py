"""How a test script is cut into test cases and set-up."""

from __future__ import annotations

from megatron_rrtf.sandbox.case_plan import split_tests


def test_top_level_asserts_are_cases_and_other_statements_set_up():
    plan = split_tests("import math\nx = 2\nassert f(x) == 4\nfor i in range(3):\n    assert f(i)\n"
                       "def helper():\n    assert False\n", None)
    assert [s.is_case for s in plan.steps] == [False, False, True, True, False]
    assert plan.num_cases == 2 and plan.check_param is None
    assert plan.steps[3].source == "for i in range(3):\n    assert f(i)"


def test_check_body_is_split_with_its_parameter_name():
    tests = ("METADATA = {}\n\ndef check(fn):\n    import math\n    assert fn(1) == 1\n"
             "    assert fn(\n        2) == 4\n")
    plan = split_tests(tests, "square")
    assert plan.check_param == "fn"
    assert [(s.is_case, s.in_check) for s in plan.steps] == [
        (False, False), (False, True), (True, True), (True, True)]
    assert plan.steps[3].source == "assert fn(\n    2) == 4"


def test_check_is_only_special_with_an_entry_point():
    plan = split_tests("def check(candidate):\n    assert candidate(1)\n", None)
    assert plan.num_cases == 0


def test_planning_from_many_threads_survives_thread_switches_inside_ast_parse():
    """run_many plans tests from a thread pool; without the parse lock this test failed 4 runs
    of 4 on CPython 3.11 ("AST constructor recursion depth mismatch") when a finalizer switched
    threads in the middle of ast.parse."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from megatron_rrtf.eval.humaneval import load_problems

    class Cycle:  # garbage whose collection runs Python code, so the GIL moves mid-parse
        def __init__(self):
            self.me = self

        def __del__(self):
            time.sleep(0)

    stop = threading.Event()

    def litter():
        while not stop.is_set():
            Cycle()
            time.sleep(0)

    jobs = [(p["test"], p["entry_point"]) for p in load_problems().values()] * 10
    littering = threading.Thread(target=litter, daemon=True)
    littering.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            plans = list(pool.map(lambda job: split_tests(*job), jobs))
    finally:
        stop.set()
        littering.join()
    assert all(plan.num_cases > 0 for plan in plans)
