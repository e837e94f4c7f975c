"""Every malformed scenario in tests/corpus/invalid gets exactly its expected message and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import mqspec

CORPUS = Path(__file__).parent / "corpus" / "invalid"
CASES = sorted(CORPUS.glob("*.yaml"))


def test_corpus_has_at_least_fifty_malformed_scenarios() -> None:
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_malformed_scenario_reports_exact_message(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS)
    monkeypatch.delenv("MQSPEC_URL", raising=False)
    result = mqspec("validate", case.name)
    assert result.exit_code == 2
    assert result.output == case.with_suffix(".expected").read_text(encoding="utf-8")
