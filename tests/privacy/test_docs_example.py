"""The code in docs/privacy.md runs and does what the text says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from peergrid.privacy.budget import BudgetExceeded, PrivacyBudget
from peergrid.privacy.disclosure import Disclosed
from peergrid.privacy.dp import DpRelease, release_with_budget

DOC = Path(__file__).parents[2] / "docs" / "privacy.md"


def test_docs_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.DOTALL)
    assert len(blocks) == 2
    namespace: dict[str, object] = {}
    for block in blocks:  # the second block reuses the first one's data, as in the text
        exec(compile(block, str(DOC), "exec"), namespace)
    published = namespace["published"]
    assert isinstance(published, Disclosed) and published.value.shape == (96,)
    assert not published.suppressed.any()  # 24 similar households: every slot is released
    assert isinstance(namespace["release"], DpRelease)
    budget = PrivacyBudget.from_json(str(namespace["budget_json"]))
    assert json.loads(str(namespace["budget_json"]))["epsilon_remaining"] == 0.0
    with pytest.raises(BudgetExceeded):  # "a further release is now refused"
        release_with_budget(
            budget,
            namespace["demand_kwh"],  # type: ignore[arg-type]
            label="again",
            epsilon=0.1,
            lower_kwh=0.0,
            upper_kwh=4.0,
            mechanism="laplace",
        )
