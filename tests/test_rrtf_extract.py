"""One extraction rule: first python fence, else any fence, else raw text cut at stop markers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_rrtf.config.rrtf import STOP_MARKERS
from megatron_rrtf.rrtf.extract import extract_code

CASES = [
    ("plain code", "def f(x):\n    return x\n", "def f(x):\n    return x\n"),
    ("python fence after prose",
     "Here you go:\n```python\ndef f():\n    return 1\n```\nThis works because...",
     "def f():\n    return 1\n"),
    ("python fence preferred over an earlier shell fence",
     "```bash\npip install x\n```\n```Python\nprint(1)\n```", "print(1)\n"),
    ("first python fence of several",
     "```py\na = 1\n```\ntext\n```python\nb = 2\n```", "a = 1\n"),
    ("unlabelled fence", "```\nx = 3\n```", "x = 3\n"),
    ("unterminated fence cut at stop marker",
     "```python\ndef g():\n    pass\n### Instruction:\nnext task", "def g():\n    pass\n"),
    ("raw text cut at the next instruction", "y = 2\n\n### Instruction:\nmore", "y = 2\n"),
    ("end-of-text token", "z = 1\n<|endoftext|>garbage", "z = 1\n"),
    ("CRLF line endings", "```python\r\nq = 1\r\n```\r\n", "q = 1\n"),
    ("indented fence in a list",
     "1. Code:\n   ```python\n   w = 1\n   ```\n", "   w = 1\n"),
    ("backticks inside a string do not close",
     '```python\ns = "```x"\nprint(s)\n```', 's = "```x"\nprint(s)\n'),
    ("fence after stop marker ignored",
     "k = 0\n### Response:\n```python\nbad = 1\n```", "k = 0\n"),
    ("empty response", "", ""),
]


@pytest.mark.parametrize("name, response, expected", CASES, ids=[c[0] for c in CASES])
def test_extract_code_awkward_cases(name, response, expected):
    assert extract_code(response, STOP_MARKERS) == expected


def test_custom_stop_markers():
    assert extract_code("a = 1\nEND\nb = 2", stop_markers=("\nEND",)) == "a = 1\n"


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="`\r", blacklist_categories=("Cs",)),
               max_size=80),
       st.sampled_from(["python", "py", "Python3", ""]),
       st.text(alphabet="abc .:\n", max_size=20))
def test_a_fenced_block_round_trips(code, tag, prose):
    code = "\n".join(line for line in code.split("\n") if "###" not in line).rstrip()
    response = f"{prose}\n```{tag}\n{code}\n```\nmore words"
    expected = code.rstrip() + "\n" if code.strip() else ""
    assert extract_code(response, stop_markers=()) == (expected if code.strip() else "")
