#!/usr/bin/env python3
"""How ferry's house looks: lines per module, the longest functions, and
the `use crate::…` arrows between modules with any import circles.

Usage: python3 tools/house.py [--top N] [--depth D]

A module is a path below src/ cut at --depth parts (default 2, e.g.
`warehouse::postgres`, `config`); an arrow A -> B means a file of A names
`crate::B…` (tests and testkit are left out: they may look anywhere).
Functions are measured from their `fn` line to the closing brace at the
same indentation.
"""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(rel, depth):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts[:depth]) or "crate"


def files():
    for d, _, names in os.walk(ROOT):
        for n in sorted(names):
            if n.endswith(".rs"):
                full = os.path.join(d, n)
                yield os.path.relpath(full, ROOT), full


def strip_tests(text):
    """The text before a trailing `#[cfg(test)] mod tests {`."""
    m = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests \{", text, re.M)
    return text[: m.start()] if m else text


USE = re.compile(r"crate::([a-z_]+)(?:::([a-z_]+))?")
FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([A-Za-z0-9_]+)")


def main():
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 12
    depth = int(sys.argv[sys.argv.index("--depth") + 1]) if "--depth" in sys.argv else 1
    lines = defaultdict(int)
    arrows = defaultdict(set)
    funcs = []
    for rel, full in files():
        if rel.startswith("testkit") or rel.endswith("tests.rs"):
            continue
        text = open(full, encoding="utf-8").read()
        code = strip_tests(text)
        mod = module_of(rel, depth)
        lines[mod] += text.count("\n")
        uses = "\n".join(l for l in code.split("\n") if not l.lstrip().startswith("//"))
        for m in USE.finditer(uses):
            target = m.group(1) if depth == 1 or not m.group(2) else f"{m.group(1)}::{m.group(2)}"
            target = "::".join(target.split("::")[:depth])
            if not os.path.exists(os.path.join(ROOT, target.split("::")[0] + ".rs")) and not os.path.isdir(
                os.path.join(ROOT, target.split("::")[0])
            ):
                continue
            if not mod.startswith(target) and not target.startswith(mod + "::") and target != mod:
                arrows[mod].add(target)
        src = code.split("\n")
        for i, line in enumerate(src):
            m = FN.match(line)
            if not m or line.rstrip().endswith(";"):
                continue
            indent = m.group(1)
            for j in range(i + 1, len(src)):
                if src[j].startswith(indent + "}") and not src[j].startswith(indent + "} else"):
                    funcs.append((j - i + 1, f"{rel}:{i + 1}", m.group(2)))
                    break
    print(f"## lines per module (depth {depth})")
    for mod, n in sorted(lines.items(), key=lambda kv: -kv[1]):
        print(f"{n:6}  {mod}")
    print(f"\n## longest functions (top {top})")
    for n, where, name in sorted(funcs, reverse=True)[:top]:
        print(f"{n:6}  {name}  ({where})")
    print("\n## import circles")
    circles = set()
    for a in arrows:
        for b in arrows[a]:
            if a in arrows.get(b, ()):
                circles.add(tuple(sorted((a, b))))
    # longer circles: a -> ... -> a through a search
    def reach(start):
        seen, stack = set(), [start]
        while stack:
            x = stack.pop()
            for y in arrows.get(x, ()):
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        return seen
    cyclic = sorted(m for m in arrows if m in reach(m))
    for a, b in sorted(circles):
        print(f"  {a} <-> {b}")
    if cyclic:
        print(f"  modules on a circle: {', '.join(cyclic)}")
    if not circles and not cyclic:
        print("  none")
    print("\n## arrows")
    for a in sorted(arrows):
        print(f"  {a} -> {', '.join(sorted(arrows[a]))}")


if __name__ == "__main__":
    main()
