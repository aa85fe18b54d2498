"""Reading passwords: from a hidden prompt, or from stdin for scripts (`--password-stdin`)."""

from __future__ import annotations

import sys

import typer

from dockyard.cli.client.errors import CliError


def stdin_lines(count: int) -> list[str]:
    """`count` lines from stdin, without their line endings (passwords may hold other whitespace)."""
    lines = [sys.stdin.readline().rstrip("\r\n") for _ in range(count)]
    if any(not line for line in lines):
        raise CliError(f"expected {count} non-empty line(s) on stdin")
    return lines


def ask_secret(label: str, *, confirm: bool = False) -> str:
    # Prompts go to stderr so that stdout stays clean for --json.
    value: str = typer.prompt(label, hide_input=True, confirmation_prompt=confirm, err=True)
    if not value:
        raise CliError(f"{label.lower()} must not be empty")
    return value


def ask_username() -> str:
    value: str = typer.prompt("Username", err=True)
    return value.strip()
