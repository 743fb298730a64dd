import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_environment_yml_has_the_same_pins_as_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    yml = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert req, "no pins found in requirements.txt"
    assert req == yml


def test_constraints_agree_with_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    lock = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in req.items():
        assert lock.get(name) == version, f"{name}: requirements {version}, constraints {lock.get(name)}"
