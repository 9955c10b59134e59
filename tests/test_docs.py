"""The complete example in docs/MODELS.md runs as written and prints what the document says."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "MODELS.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_models_doc_example_runs():
    """The one self-contained block (it builds its own tiny checkpoint): on a machine without a GPU it
    runs in the interpreter, exactly as a reader would paste it."""
    (example,) = [b for b in _python_blocks(DOC.read_text()) if "save_pretrained(folder)" in b]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, str(DOC), "exec"), {"__name__": "__docs__"})
    first, second = printed.getvalue().splitlines()
    assert first == "SequenceClassifierOutput torch.Size([2, 3])"
    max_diff = float(re.search(r"tensor\(([^,)]+)", second).group(1))
    assert max_diff < 1e-6, f"the example's logits differ from transformers by {max_diff}"
