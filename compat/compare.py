"""Compare two outcome records (``compat.recording``): vanilla against
testbed.

    python -m compat.compare VANILLA.json TESTBED.json [--engine NAME]
        [--allowlist compat/django_expected_differences.txt]

Prints each record's counts per outcome and every test whose outcome
differs, grouped by the change. Exits 0 when the only differences are
allowlisted, 1 when others remain, 2 when a record is missing or its run
did not finish (a crashed run would otherwise compare as "fewer tests").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compat.recording import OUTCOMES

DEFAULT_ALLOWLIST = Path(__file__).with_name("django_expected_differences.txt")

# A test that one run has and the other has not: the runs' labels differ,
# or one run stopped part way.
ABSENT = "absent"


@dataclass(frozen=True)
class Allowed:
    test: str
    reason: str
    # None: every engine.
    engine: str | None


def load_allowlist(path: Path) -> list[Allowed]:
    """One difference a line: ``[ENGINE:]TEST_ID REASON``; lines starting
    with ``#`` are comments."""
    entries: list[Allowed] = []
    if not path.exists():
        return entries
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        # Whole-line comments only: a reason may itself contain "#".
        if not line or line.startswith("#"):
            continue
        test, _, reason = line.partition(" ")
        if not reason.strip():
            raise SystemExit(f"{path}:{number}: a reason must follow the test id")
        engine, colon, rest = test.partition(":")
        if colon:
            entries.append(Allowed(rest, reason.strip(), engine))
        else:
            entries.append(Allowed(test, reason.strip(), None))
    return entries


def load_record(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"no record at {path}: that run has not been made") from None
    return data


def counts(record: dict[str, Any]) -> Counter[str]:
    return Counter(entry["outcome"] for entry in record["tests"].values())


def differences(
    vanilla: dict[str, Any], testbed: dict[str, Any]
) -> dict[tuple[str, str], list[str]]:
    """Test ids by (vanilla outcome, testbed outcome), for each pair that
    differs."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    tests_v, tests_t = vanilla["tests"], testbed["tests"]
    for test in sorted(set(tests_v) | set(tests_t)):
        before = tests_v.get(test, {}).get("outcome", ABSENT)
        after = tests_t.get(test, {}).get("outcome", ABSENT)
        if before != after:
            groups[before, after].append(test)
    return groups


def _describe(record: dict[str, Any]) -> str:
    state = "complete" if record.get("complete") else "INCOMPLETE"
    if record.get("crash"):
        state += f", crashed: {record['crash']}"
    testbed = record.get("testbed")
    where = f", testbed from {testbed}" if testbed else ""
    return f"{record.get('runner')} ({state}, {record.get('elapsed')} s{where})"


def _count_line(label: str, counter: Counter[str]) -> str:
    cells = "  ".join(f"{outcome}={counter.get(outcome, 0)}" for outcome in OUTCOMES)
    return f"  {label:<8} total={sum(counter.values()):<6} {cells}"


def report(
    vanilla: dict[str, Any],
    testbed: dict[str, Any],
    allowlist: list[Allowed],
    engine: str | None,
    out: Any = sys.stdout,
    flaky: dict[str, str] | None = None,
) -> int:
    """Print the comparison; its verdict as an exit status. ``flaky`` maps
    tests that differed here but agreed when their app ran again, under
    both runners, to what the rerun found: reported, not counted."""
    flaky = flaky or {}

    def say(text: str = "") -> None:
        print(text, file=out)

    heading = f"Django {vanilla.get('django')}" + (f" on {engine}" if engine else "")
    say(f"== {heading}: vanilla against testbed")
    say(f"  vanilla: {_describe(vanilla)}")
    say(f"  testbed: {_describe(testbed)}")
    say(_count_line("vanilla", counts(vanilla)))
    say(_count_line("testbed", counts(testbed)))
    if vanilla.get("labels") != testbed.get("labels"):
        say("  WARNING: the two runs were given different test labels")

    allowed = {
        entry.test: entry
        for entry in allowlist
        if entry.engine is None or entry.engine == engine
    }
    groups = differences(vanilla, testbed)
    unexpected = 0
    expected: list[tuple[str, str, str, str]] = []
    rerun: list[tuple[str, str, str, str]] = []
    for (before, after), tests in sorted(groups.items()):
        rerun += [(t, before, after, flaky[t]) for t in tests if t in flaky]
        tests = [t for t in tests if t not in flaky]
        listed = [test for test in tests if test not in allowed]
        expected += [
            (test, before, after, allowed[test].reason)
            for test in tests
            if test in allowed
        ]
        if not listed:
            continue
        unexpected += len(listed)
        say(f"  {before} -> {after} ({len(listed)}):")
        for test in listed:
            say(f"    {test}")
            detail = testbed["tests"].get(test, {}).get("details") or vanilla[
                "tests"
            ].get(test, {}).get("details")
            if detail:
                say(f"      {detail[0].splitlines()[0][:200]}")
    if rerun:
        say(
            f"  differed once, agreed when their app ran again under both "
            f"runners ({len(rerun)}):"
        )
        for test, before, after, again in rerun:
            say(f"    {test}: {before} -> {after}; again: {again}")
    if expected:
        say(f"  allowlisted differences ({len(expected)}):")
        for test, before, after, reason in expected:
            say(f"    {test}: {before} -> {after} ({reason})")
    differing = {test for tests in groups.values() for test in tests}
    stale = sorted(test for test in allowed if test not in differing)
    if stale:
        say(f"  allowlisted but not differing ({len(stale)}): {', '.join(stale)}")

    if not (vanilla.get("complete") and testbed.get("complete")):
        say("  RESULT: a run did not finish; the comparison is not a verdict")
        return 2
    if unexpected:
        say(f"  RESULT: {unexpected} unexpected difference(s)")
        return 1
    say("  RESULT: identical outcomes" + (" (allowlisted aside)" if expected else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vanilla", type=Path)
    parser.add_argument("testbed", type=Path)
    parser.add_argument("--engine", help="applies the allowlist's ENGINE: entries")
    parser.add_argument("--allowlist", type=Path, default=DEFAULT_ALLOWLIST)
    args = parser.parse_args(argv)
    try:
        vanilla, testbed = load_record(args.vanilla), load_record(args.testbed)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    return report(vanilla, testbed, load_allowlist(args.allowlist), args.engine)


if __name__ == "__main__":
    sys.exit(main())
