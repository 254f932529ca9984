#!/usr/bin/env python3
"""Read deps/versions.txt, the one list of pinned versions, for one install target.

    python3 tools/pins.py cpu|score|train [--field name|version|requirement]

Line format: `name==version  # tags`. Tags: `cpu` (the CPU virtualenv only), `score` (the scoring
container only), `train` (the training container only), `image` (a container base image tag, never
pip-installed), `sdist` (built from its sdist on the CPU venv), none (everywhere pip installs). Used by
tools/setup_env.sh and docker/*.Dockerfile; tests/test_containers.py checks they agree. Standard
library only: it runs before any environment exists.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PINS = Path(__file__).resolve().parents[1] / "deps" / "versions.txt"
TARGETS = ("cpu", "score", "train")
TAGS = {"cpu", "score", "train", "image", "sdist"}
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.\-/:]+)==(?P<version>[^\s#]+)\s*(?:#\s*(?P<tags>.*))?$")


def read_pins(path: Path = PINS) -> list[dict]:
    pins = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise SystemExit(f"{path}:{n}: cannot parse {raw!r} (expected name==version  # tags)")
        tags = set((m["tags"] or "").split())
        if tags - TAGS:
            raise SystemExit(f"{path}:{n}: unknown tag(s) {sorted(tags - TAGS)}; known: {sorted(TAGS)}")
        pins.append({"name": m["name"], "version": m["version"], "tags": tags})
    return pins


def for_target(target: str, pins: list[dict] | None = None) -> list[dict]:
    pins = read_pins() if pins is None else pins

    def wanted(p: dict) -> bool:
        scoped = p["tags"] & set(TARGETS)  # no target tag: everywhere; else only the named targets
        return p["name"] != "python" and "image" not in p["tags"] and (not scoped or target in scoped)

    return [p for p in pins if wanted(p)]


def pin(name: str, pins: list[dict] | None = None) -> str:
    pins = read_pins() if pins is None else pins
    for p in pins:
        if p["name"] == name:
            return p["version"]
    raise KeyError(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=(*TARGETS, "version"))
    ap.add_argument("name", nargs="?", help="with target=version: print this package's pinned version")
    ap.add_argument("--exclude-tag", action="append", default=[], help="drop lines carrying this tag")
    args = ap.parse_args()
    if args.target == "version":
        print(pin(args.name))
        return
    for p in for_target(args.target):
        if not p["tags"] & set(args.exclude_tag):
            sys.stdout.write(f"{p['name']}=={p['version']}\n")


if __name__ == "__main__":
    main()
