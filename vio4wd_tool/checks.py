"""Doctor check registry and result type, shared by every concern module."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Iterable


class Status(str, enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass
class Result:
    """One finding of one check.  `subject` distinguishes results of one check (a node, a VF)."""

    check: str
    status: Status
    finding: str
    fix: str = ""
    requirement: str = ""
    subject: str = ""
    title: str = ""
    group: str = ""

    def to_json(self) -> dict:
        return {"id": self.check, "group": self.group, "title": self.title, "subject": self.subject,
                "status": self.status.value, "finding": self.finding, "fix": self.fix,
                "requirement": self.requirement}


@dataclass
class Check:
    id: str
    group: str
    title: str
    requirement: str
    fn: Callable[..., Iterable[Result] | Result | None]

    def run(self, host, intent) -> list[Result]:
        out = self.fn(host, intent)
        results = [out] if isinstance(out, Result) else list(out or ())
        for r in results:
            r.check, r.group, r.requirement = self.id, self.group, r.requirement or self.requirement
            r.title = r.title or self.title
        return results


REGISTRY: dict[str, Check] = {}


def check(id: str, group: str, title: str, requirement: str):
    """Register a doctor check: `fn(host, intent)` returns or yields `Result`s."""

    def deco(fn):
        if id in REGISTRY:
            raise ValueError(f"duplicate check id {id}")
        REGISTRY[id] = Check(id, group, title, requirement, fn)
        return fn

    return deco


def ok(finding: str, subject: str = "") -> Result:
    return Result("", Status.PASS, finding, subject=subject)


def warn(finding: str, fix: str, subject: str = "") -> Result:
    return Result("", Status.WARN, finding, fix, subject=subject)


def fail(finding: str, fix: str, subject: str = "") -> Result:
    return Result("", Status.FAIL, finding, fix, subject=subject)


def skip(finding: str, subject: str = "") -> Result:
    return Result("", Status.SKIP, finding, subject=subject)
