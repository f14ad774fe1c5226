"""Figures the fault suite checked, printed together at the end of the run."""

FIGURES: list[str] = []


def record(line: str) -> None:
    print(line)  # also in the test's own captured output
    FIGURES.append(line)
