"""Bad input, said line by line: what every step raises when a user can fix something."""

from __future__ import annotations


class Refused(ValueError):
    """Each line names the file or item and what is wrong; the CLI prints them and exits 2."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


class ConfigError(Refused):
    """params.yaml cannot drive a step: a missing or unknown key, a bad value, unreadable YAML."""
