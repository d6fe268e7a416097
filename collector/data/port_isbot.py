#!/usr/bin/env python3
"""Port omrilotan/isbot's pattern list (JS regexes) to Rust `regex` syntax.

Rust's regex crate has no lookaround; the 6 patterns that use it are rewritten
as equivalent lookaround-free alternations (negative lookahead expanded
character by character; negative lookbehind expanded likewise). The one
lossy rewrite: google's lookbehind (?<! channel/|google/) is dropped.
Usage: port_isbot.py IN OUT
"""
import re, sys

def esc(s):
    return "".join(c if c == " " else re.escape(c) for c in s)

def neg_ahead(word):
    # matches iff the text at this point does not start with `word`
    if not word:
        return None  # impossible
    c, rest = esc(word[0]), word[1:]
    if not rest:
        return f"(?:$|[^{c}])"
    return f"(?:$|[^{c}]|{c}{neg_ahead(rest)})"

def neg_ahead_alts(words):
    firsts = sorted({w[0] for w in words})
    parts = ["$", "[^" + "".join(esc(f) for f in firsts) + "]"]
    for f in firsts:
        tails = [w[1:] for w in words if w[0] == f]
        if any(t == "" for t in tails):
            continue
        assert len(tails) == 1, tails
        parts.append(esc(f) + neg_ahead(tails[0]))
    return "(?:" + "|".join(parts) + ")"

def neg_behind(s):
    n = len(s)
    alts = ["^"]
    for k in range(1, n):
        alts.append("^" + esc(s[n - k:]))
    for k in range(0, n):
        alts.append("[^" + esc(s[n - 1 - k]) + "]" + esc(s[n - k:]))
    return "(?:" + "|".join(alts) + ")"

REWRITE = {
    r"(?:^|[^g])news(?!sapphire)": r"(?:^|[^g])news" + neg_ahead("sapphire"),
    r"(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))":
        "google" + neg_ahead_alts(["wv", "app", "/google", " pixel"]),
    r"(?<! cu)bots?(?:\b|_)": neg_behind(" cu") + r"bots?(?:\b|_)",
    r"(?<!cam)scan": neg_behind("cam") + "scan",
    r"(?<!lib)http": neg_behind("lib") + "http",
    r"java(?!;)": "java" + neg_ahead(";"),
}

ASCII_CLASS = {"w": "0-9A-Za-z_", "d": "0-9", "s": "\\t\\n\\x0B\\x0C\\r "}

def asciify(p):
    """JS \\w \\d \\s \\b are ASCII; Rust's are Unicode, and a Unicode \\b stops
    the lazy DFA on any non-ASCII input (falls back to the slow PikeVM)."""
    out, i, in_class = [], 0, False
    while i < len(p):
        ch = p[i]
        if ch == "\\" and i + 1 < len(p):
            e = p[i + 1]
            if e in ASCII_CLASS:
                out.append(ASCII_CLASS[e] if in_class else "[" + ASCII_CLASS[e] + "]")
            elif e == "b" and not in_class:
                out.append("(?-u:\\b)")
            else:
                out.append(p[i:i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)

src, dst = sys.argv[1], sys.argv[2]
out = []
for line in open(src):
    p = line.rstrip("\n")
    if not p:
        continue
    q = REWRITE.get(p, p)
    # JS allows "[\w\d-.]" (a literal '-' after a class escape); Rust does not.
    q = q.replace(r"[\w\d-.]", r"[\w\d.\-]")
    out.append(asciify(q))
    assert "(?<" not in out[-1] and "(?=" not in out[-1] and "(?!" not in out[-1], out[-1]
open(dst, "w").write("\n".join(out) + "\n")
print(len(out), "patterns;", sum(1 for l in open(src) if l.rstrip("\n") in REWRITE), "rewritten")
