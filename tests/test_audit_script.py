"""`make audit` (scripts/audit.py) fails on a finding, whatever else happened, and says
loudly when no vulnerability service could be reached."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

SPEC = importlib.util.spec_from_file_location("audit", Path(__file__).resolve().parent.parent / "scripts" / "audit.py")
audit: Any = importlib.util.module_from_spec(SPEC)
sys.modules["audit"] = audit  # dataclasses look their module up there
SPEC.loader.exec_module(audit)

VULN = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "fix_versions": ["5.2.99"], "description": "x"}


def report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(dependencies), "fixes": []}


def test_a_known_vulnerability_fails_the_audit() -> None:
    verdict = audit.judge(report({"name": "django", "version": "5.2.19", "vulns": [VULN]}), {}, "pypi")

    assert verdict.code == 1
    assert any(
        "VULNERABLE django 5.2.19: PYSEC-2099-1 / CVE-2099-0001 (fixed in: 5.2.99)" in line for line in verdict.lines
    )


def test_a_finding_fails_even_when_other_packages_could_not_be_checked() -> None:
    skipped = {"name": "redis", "skip_reason": "Dependency not found on PyPI and could not be audited: redis (8.1.0)"}
    verdict = audit.judge(report(skipped, {"name": "django", "version": "5.2.19", "vulns": [VULN]}), {}, "pypi")

    assert (verdict.code, verdict.unreachable) == (1, False)


@pytest.mark.parametrize("listed", ["PYSEC-2099-1", "CVE-2099-0001"])
def test_a_reviewed_exception_passes_and_is_still_listed(listed: str) -> None:
    verdict = audit.judge(
        report({"name": "django", "version": "5.2.19", "vulns": [VULN]}), {listed: "not reachable here"}, "pypi"
    )

    assert verdict.code == 0
    assert any("REVIEWED EXCEPTION" in line and "not reachable here" in line for line in verdict.lines)


def test_a_clean_report_passes() -> None:
    verdict = audit.judge(report({"name": "django", "version": "5.2.19", "vulns": []}), {}, "pypi")

    assert (verdict.code, verdict.unreachable) == (0, False)


def test_nothing_checked_because_the_service_is_unreachable_is_reported_as_such() -> None:
    skipped = {
        "name": "django",
        "skip_reason": "Dependency not found on PyPI and could not be audited: django (5.2.19)",
    }

    verdict = audit.judge(report(skipped), {}, "pypi")

    assert verdict.unreachable and verdict.code == 0
    assert verdict.lines[0] == "pip-audit (pypi): 0 packages checked, 1 not checked."


def test_an_exception_without_a_reason_is_refused(tmp_path: Path) -> None:
    ignore = tmp_path / ".pip-audit-ignore"
    ignore.write_text("# comment\nPYSEC-2099-1  # fixed code path not used\nCVE-2099-0002\n")

    with pytest.raises(SystemExit, match="CVE-2099-0002 has no reason"):
        audit.reviewed_exceptions(ignore)


def test_the_reviewed_exceptions_file_parses() -> None:
    assert isinstance(audit.reviewed_exceptions(), dict)


def test_without_any_service_the_strict_mode_fails(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(audit, "run_pip_audit", lambda service, exceptions: audit.Verdict(0, ["x"], unreachable=True))
    monkeypatch.setenv("BUZZER_AUDIT_STRICT", "1")
    assert audit.main() == 2
    monkeypatch.delenv("BUZZER_AUDIT_STRICT")
    assert audit.main() == 0
    assert "pip-audit checked NOTHING" in capsys.readouterr().out
