#!/usr/bin/env python3
"""Lists the crate's module dependencies and fails on a cycle.

Each source file under src/ is one module. An edge A -> B means that A names
something of B (a `use`, or a `crate::`/`super::` path in code). Names that
a folder's mod.rs re-exports are followed to the file that defines them, so a
re-export does not count as a dependency on the folder itself. Test modules
(`#[cfg(test)] mod tests`) are left out: they may reach anywhere.

    python3 scripts/module_deps.py            # the edges, then "no cycle"
    python3 scripts/module_deps.py --dot      # the graph for graphviz
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_files():
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = [parts[0]]
            mods[tuple(parts)] = os.path.join(dirpath, f)
    return mods


def strip_tests_and_comments(text):
    # Drop `#[cfg(test)] mod x { ... }` blocks by brace matching.
    out = []
    i = 0
    pat = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{")
    while True:
        m = pat.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i:m.start()])
        depth = 1
        j = m.end()
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    text = "".join(out)
    text = re.sub(r"//[^\n]*", "", text)
    return text


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"\s+as\s+\w+$", "", tree)]
    prefix = tree[:brace]
    inner = tree[brace + 1 : tree.rfind("}")]
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    paths = []
    for item in items:
        if item.strip():
            for p in expand_use_tree(item):
                paths.append(prefix + p if p != "self" else prefix.rstrip(":"))
    return paths


def reexports(mods):
    """name -> defining module, for each folder module's `pub use`."""
    table = {}
    for mod, path in mods.items():
        text = strip_tests_and_comments(open(path).read())
        for m in re.finditer(r"pub(\(crate\))?\s+use\s+([^;]+);", text):
            for p in expand_use_tree(m.group(2)):
                segs = [s for s in p.replace(" ", "").split("::") if s]
                if not segs:
                    continue
                target = resolve(mod, segs[:-1] if len(segs) > 1 else segs, mods, {})
                if target:
                    table[(mod, segs[-1])] = target
    return table


def resolve(mod, segs, mods, table):
    if segs[0] in ("crate", "pa_onnx"):
        # The binary's modules reach the library as `pa_onnx::`.
        base, segs = (), segs[1:]
    elif segs[0] == "super":
        base = mod[:-1] if mod not in (("lib",), ("main",)) else ()
        segs = segs[1:]
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
    elif segs[0] == "self":
        base, segs = mod, segs[1:]
    elif mod[:1] not in (("lib",), ("main",)) and tuple(mod + (segs[0],)) in mods:
        base = mod
    else:
        return None
    best = base if base in mods else None
    cur = base
    for i, s in enumerate(segs):
        nxt = cur + (s,)
        if nxt in mods:
            cur = nxt
            best = cur
            continue
        if (cur, s) in table:
            return table[(cur, s)]
        break
    return best


def edges(mods):
    table = reexports(mods)
    out = {}
    for mod, path in mods.items():
        text = strip_tests_and_comments(open(path).read())
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths += expand_use_tree(m.group(1))
        for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", text):
            paths.append(m.group(1))
        deps = set()
        for p in paths:
            segs = [s for s in p.replace(" ", "").split("::") if s]
            if not segs:
                continue
            t = resolve(mod, segs, mods, table)
            if t and t != mod and t[: len(mod)] != mod:
                # A folder's mod.rs naming its own children is structure, not a
                # dependency; anything else is.
                deps.add(t)
        out[mod] = deps
    return out


def find_cycle(graph):
    color = {}
    stack = []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not color.get(m):
                c = visit(m)
                if c:
                    return c
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(graph):
        if not color.get(n):
            c = visit(n)
            if c:
                return c
    return None


def name(m):
    return "::".join(m) if m else "crate"


def main():
    mods = module_files()
    graph = edges(mods)
    if "--dot" in sys.argv:
        print("digraph deps {")
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f'  "{name(a)}" -> "{name(b)}";')
        print("}")
        return 0
    for a in sorted(graph):
        print(f"{name(a)} -> {', '.join(name(b) for b in sorted(graph[a])) or '(nothing)'}")
    cycle = find_cycle(graph)
    if cycle:
        print("cycle: " + " -> ".join(name(m) for m in cycle))
        return 1
    print("no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
