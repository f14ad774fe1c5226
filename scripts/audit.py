"""`make audit`: known vulnerabilities in the pinned dependencies (pip-audit).

pip-audit resolves requirements.txt (with what it pulls in) and asks a vulnerability
service about every package: PyPI's JSON API first, then OSV if PyPI's cannot answer.
Exit codes:

- 0: every package was checked and nothing was found (or only the reviewed exceptions
  in `.pip-audit-ignore`); also when no service could be reached at all, with a loud
  message saying that nothing was checked, unless BUZZER_AUDIT_STRICT=1;
- 1: a known vulnerability (not a reviewed exception), or pip-audit itself failed;
- 2: no service could be reached and BUZZER_AUDIT_STRICT=1.

A finding always fails: being unable to reach a service never hides one that was found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IGNORE_FILE = ROOT / ".pip-audit-ignore"
SERVICES = ("pypi", "osv")
# What pip-audit says when the service, not the package, is the problem.
UNREACHABLE = (
    "not found on PyPI",
    "Could not connect",
    "ConnectionError",
    "Max retries exceeded",
    "Failed to resolve",
    "Name or service not known",
    "timed out",
    "Temporary failure in name resolution",
)


@dataclass
class Verdict:
    code: int
    lines: list[str] = field(default_factory=list)
    unreachable: bool = False


def reviewed_exceptions(path: Path = IGNORE_FILE) -> dict[str, str]:
    """Vulnerability id -> the reason it was reviewed and accepted (`ID  # reason`)."""
    exceptions: dict[str, str] = {}
    if not path.exists():
        return exceptions
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        vuln_id, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"{path.name}: {vuln_id.strip()} has no reason; write `ID  # why it is acceptable`")
        exceptions[vuln_id.strip()] = reason.strip()
    return exceptions


def judge(report: dict[str, Any], exceptions: dict[str, str], service: str) -> Verdict:
    """Read pip-audit's JSON report."""
    findings, accepted, skipped = [], [], []
    for dependency in report.get("dependencies", []):
        name = f"{dependency['name']} {dependency.get('version', '')}".strip()
        if "skip_reason" in dependency:
            skipped.append((name, dependency["skip_reason"]))
            continue
        for vuln in dependency.get("vulns", []):
            ids = [vuln["id"], *vuln.get("aliases", [])]
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed release yet"
            line = f"{name}: {' / '.join(ids)} (fixed in: {fixed})"
            reason = next((exceptions[i] for i in ids if i in exceptions), None)
            (accepted if reason else findings).append(f"{line}" + (f" - accepted: {reason}" if reason else ""))
    checked = len(report.get("dependencies", [])) - len(skipped)
    lines = [f"pip-audit ({service}): {checked} packages checked, {len(skipped)} not checked."]
    lines += [f"  REVIEWED EXCEPTION {line}" for line in accepted]
    lines += [f"  VULNERABLE {line}" for line in findings]
    lines += [f"  not checked: {name}: {reason}" for name, reason in skipped]
    if findings:
        lines.append("Upgrade the pins to a fixed release, or review and record an exception in .pip-audit-ignore.")
        return Verdict(1, lines)
    unreachable = bool(skipped) and all(any(s in reason for s in UNREACHABLE) for _, reason in skipped)
    return Verdict(0, lines, unreachable=unreachable and checked == 0)


def run_pip_audit(service: str, exceptions: dict[str, str]) -> Verdict:
    command = [
        str(Path(sys.executable).with_name("pip-audit")),
        "--requirement",
        str(ROOT / "requirements.txt"),
        "--vulnerability-service",
        service,
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--timeout",
        "20",
    ]
    # No --ignore-vuln: pip-audit would drop those from its report; `judge` applies the
    # reviewed exceptions and still lists them.
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        output = (done.stderr or done.stdout).strip()
        last = output.splitlines()[-1] if output else f"exit code {done.returncode}"
        if any(s in output for s in UNREACHABLE):
            return Verdict(0, [f"pip-audit ({service}): the service could not be reached: {last}"], unreachable=True)
        return Verdict(1, [f"pip-audit ({service}) failed: {last}"])
    return judge(report, exceptions, service)


def main() -> int:
    exceptions = reviewed_exceptions()
    tried: list[str] = []
    for service in SERVICES:
        verdict = run_pip_audit(service, exceptions)
        print("\n".join(verdict.lines if not verdict.unreachable else verdict.lines[:2]))
        if not verdict.unreachable:
            return verdict.code
        tried.append(service)
    print(
        "\n*** pip-audit checked NOTHING: no vulnerability service could be reached from this machine "
        f"({', '.join(tried)}). The dependencies are NOT known to be free of vulnerabilities. ***\n"
        "Run `make audit` where PyPI's JSON API (pypi.org/pypi/<name>/json) or api.osv.dev answers; "
        "set BUZZER_AUDIT_STRICT=1 to make this a failure."
    )
    return 2 if os.environ.get("BUZZER_AUDIT_STRICT") == "1" else 0


if __name__ == "__main__":
    sys.exit(main())
