"""`mailflow demo` plays a whole case on loopback and shows it."""

from __future__ import annotations

import subprocess
import sys


def test_demo_plays_a_case_from_report_to_enactment(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mailflow", "demo"], capture_output=True,
                            cwd=tmp_path, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    steps = ["reports an incident", "We have received your report", "New report:",
             "#propose private reprimand", "proposal #1: a private reprimand",
             "call summary #1 filed", "consensus reached", "Draft 1 to confirm",
             "What we intend to do about your report", "Thank you, that sounds right",
             "enacted: a private reprimand", "The case record"]
    positions = [out.find(s) for s in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    record = out[out.index("The case record"):]
    for line in ("Violation:            yes", "Required response:    a private reprimand",
                 "agree    m2@example.org", "Reporter consulted: draft 1 (sent)", "Enacted:",
                 "call of", "feedback, filed by rita@people.example"):
        assert line in record, line
    assert "Traceback" not in out + result.stderr.decode()
    assert list(tmp_path.iterdir()) == []  # the temporary archive is gone
