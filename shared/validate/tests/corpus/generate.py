#!/usr/bin/env python3
"""Writes the corpus: for each case, before/after files and a real unified diff made with
`diff -u`, plus manifest.json (id, kind, category, path, expected decision, options).

Run from this folder: python3 generate.py. The test (tests/corpus.rs) reads the files, not
this script; re-run it after changing a case.
"""
import json
import os
import shutil
import subprocess

from bases import PY_ORDERS, PY_REPORTS, PY_WEBHOOK, JS_ORDERS, JS_THUMBS, TS_API, TS_REPORTS, RS_MAIN, RS_DB
from cases import CASES

# The rule an unsafe case of each category must raise (a case may name another with "rule").
RULE_OF = {
    "syntax": "syntax",
    "code_execution": "code_execution",
    "destructive": "destructive_operation",
    "sql": "sql_injection",
    "deserialization": "unsafe_deserialization",
    "tls": "tls_verification",
    "egress": "egress_host",
    "exfiltration": "exfiltration",
    "secrets": "secret",
    "protected": "protected_path",
    "tenant": "tenant_isolation",
    "imports": "import_allowlist",
    "patch_applies": "patch_applies",
    "dependency": "new_dependency",
}

HERE = os.path.dirname(os.path.abspath(__file__))
BASES = {
    "py_orders": ("src/handlers/orders.py", PY_ORDERS),
    "py_reports": ("reports/handler.py", PY_REPORTS),
    "py_webhook": ("webhook/app.py", PY_WEBHOOK),
    "js_orders": ("src/orders.js", JS_ORDERS),
    "js_thumbs": ("thumbs/index.js", JS_THUMBS),
    "ts_api": ("src/quotes.ts", TS_API),
    "ts_reports": ("src/reports.ts", TS_REPORTS),
    "rs_main": ("src/main.rs", RS_MAIN),
    "rs_db": ("src/db.rs", RS_DB),
}


def apply_edits(text, edits, case_id):
    for old, new in edits:
        if text.count(old) != 1:
            raise SystemExit(f"{case_id}: edit anchor found {text.count(old)} times: {old!r}")
        text = text.replace(old, new)
    return text


def main():
    cases_dir = os.path.join(HERE, "cases")
    shutil.rmtree(cases_dir, ignore_errors=True)
    manifest = []
    seen = set()
    for c in CASES:
        cid = c["id"]
        if cid in seen:
            raise SystemExit(f"duplicate case {cid}")
        seen.add(cid)
        if "base" in c:
            path, before = BASES[c["base"]]
            path = c.get("path", path)
        else:
            path, before = c["path"], c.get("before")
        after = c["after"] if "after" in c else apply_edits(before, c["edits"], cid)
        # A stale patch: the diff is made against `diff_base`, the file is `before`.
        diff_base = apply_edits(before, c["stale"], cid) if "stale" in c else before
        ext = os.path.splitext(path)[1] or ".txt"
        d = os.path.join(cases_dir, cid)
        os.makedirs(d)
        names = {"after": f"after{ext}", "diff": "patch.diff"}
        with open(os.path.join(d, names["after"]), "w") as f:
            f.write(after)
        old_label = f"a/{path}"
        if before is None:
            old_file, old_label = "/dev/null", "/dev/null"
        else:
            names["before"] = f"before{ext}"
            with open(os.path.join(d, names["before"]), "w") as f:
                f.write(before)
            old_file = os.path.join(d, "diff_base" + ext)
            with open(old_file, "w") as f:
                f.write(diff_base)
        out = subprocess.run(
            ["diff", "-u", "--label", old_label, "--label", f"b/{path}", old_file, os.path.join(d, names["after"])],
            capture_output=True,
            text=True,
        )
        if out.returncode != 1:
            raise SystemExit(f"{cid}: diff found no change ({out.returncode}): {out.stderr}")
        if old_file != "/dev/null":
            os.remove(old_file)
        with open(os.path.join(d, names["diff"]), "w") as f:
            f.write(out.stdout)
        entry = {
            "id": cid,
            "kind": c["kind"],
            "category": c["category"],
            "language": c.get("language") or {".py": "python", ".js": "javascript", ".ts": "typescript", ".rs": "rust"}.get(ext, ext.lstrip(".")),
            "path": path,
            "expect": c["expect"],
            "files": names,
            "note": c["note"],
        }
        if c["kind"] == "unsafe":
            entry["rule"] = c.get("rule") or RULE_OF[c["category"]]
        for k in ("tenant", "handler", "env", "known_gap"):
            if k in c:
                entry[k] = c[k]
        manifest.append(entry)
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    kinds = {k: sum(1 for m in manifest if m["kind"] == k) for k in ("unsafe", "benign")}
    print(f"{len(manifest)} cases: {kinds}")


if __name__ == "__main__":
    main()
