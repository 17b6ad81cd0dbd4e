"""The units: systemd-analyze verify and the security score as gates."""

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

UNITS = ["vehicle-agent.service", "vehicle-sim.service"]
needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed (make test installs systemd: .ci/system-deps)")


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure_is_at_most_two(unit):
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(REPO / "systemd" / unit)],
                         capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= 2.0


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_units_verify(unit, tmp_path):
    # verify wants the ExecStart binary to exist: point it at one that does, keep everything else
    text = (REPO / "systemd" / unit).read_text().replace("/opt/vehicle-agent/venv/bin/vehicle-agent", "/usr/bin/env")
    path = tmp_path / unit
    path.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "rror" not in out.stderr, out.stderr


def test_agent_unit_is_a_notify_service_with_watchdog():
    text = (REPO / "systemd" / "vehicle-agent.service").read_text()
    for line in ("Type=notify", "Restart=on-failure", "StateDirectory=vehicle-agent",
                 "RuntimeDirectory=vehicle-agent", "DynamicUser=yes", "ConfigurationDirectory=vehicle-agent"):
        assert line in text
    assert re.search(r"^WatchdogSec=\d+", text, re.MULTILINE)
    assert re.search(r"^StartLimitBurst=\d+", text, re.MULTILINE)
