"""A docker-credential-helpers program for tests: answers from a table, logs every question.

It speaks the real protocol (``docker-credential-NAME get``, the server on stdin, JSON on stdout,
"credentials not found in native keychain" and exit 1 for an unknown server), so bulkpull runs it
exactly as it runs ``docker-credential-pass`` or ``-ecr-login``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

_PROGRAM = """#!{python}
import json, pathlib, sys

here = pathlib.Path(__file__).resolve().parent
server = sys.stdin.read()
with open(here / "{name}.questions", "a") as log:
    log.write(json.dumps([sys.argv[1:], server]) + "\\n")
answers = json.loads((here / "{name}.answers.json").read_text())
answer = answers.get(server)
if answer is None:
    print("credentials not found in native keychain")
    sys.exit(1)
if isinstance(answer, str):
    print(answer)
    sys.exit(3)
print(json.dumps({{"ServerURL": server, "Username": answer[0], "Secret": answer[1]}}))
"""


@dataclass(frozen=True)
class CredentialHelper:
    """An installed helper: ``docker-credential-<name>`` in ``directory``."""

    directory: Path
    name: str

    @property
    def questions(self) -> list[tuple[str, str]]:
        """Every invocation so far: its arguments (space-joined) and what it read on stdin."""
        log = self.directory / f"{self.name}.questions"
        if not log.exists():
            return []
        asked = [json.loads(line) for line in log.read_text().splitlines()]
        return [(" ".join(arguments), server) for arguments, server in asked]


def install_credential_helper(
    directory: Path, name: str, answers: dict[str, tuple[str, str] | str]
) -> CredentialHelper:
    """Write ``docker-credential-<name>`` into ``directory``.

    ``answers`` maps a server to ``(username, secret)``, or to a message the helper prints
    before failing with exit code 3; any other server is "not found".
    """
    directory.mkdir(parents=True, exist_ok=True)
    program = directory / f"docker-credential-{name}"
    program.write_text(_PROGRAM.format(python=sys.executable, name=name))
    program.chmod(0o755)
    (directory / f"{name}.answers.json").write_text(json.dumps(answers))
    return CredentialHelper(directory, name)
