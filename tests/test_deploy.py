"""deploy/: the compose file parses and only runs `bench` commands that exist."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from bench_service.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_compose_services_and_bench_commands_are_valid() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "ray-head", "ray-worker", "dashboard"} <= set(services)
    parser = build_parser()
    commands = []
    for svc in services.values():
        cmd = svc.get("command", "")
        cmd = cmd if isinstance(cmd, str) else " ".join(cmd)
        for part in cmd.replace('"', " ").split("&&"):
            words = shlex.split(part.replace("bash -c", ""))
            if words and words[0] == "bench":
                commands.append(words[1:])
    assert len(commands) >= 2
    for args in commands:
        parser.parse_args(args)  # exits (SystemExit) on an unknown command or option
    assert "6380" in services["ray-worker"]["command"]
