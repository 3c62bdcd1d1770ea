#!/usr/bin/env python3
"""Regenerates schema_table.rs: the shape of every built-in API type's non-scalar fields.

The facts come from k8s-openapi's generated types (themselves generated from the
Kubernetes OpenAPI definitions): each struct's JSON field names, the element type of
every object/list/map field, and the merge strategy of every list and map (atomic,
set, or map keyed by the patch merge key). The sources read are those of the
k8s-openapi version in Cargo.lock (found with `cargo metadata`, which downloads it if
needed), for the API version `.cargo/config.toml` enables; the output goes through
rustfmt, so the committed file is exactly what this prints. Run after bumping
k8s-openapi:

    python3 src/api/patch/gen_schema.py          # rewrites schema_table.rs
    python3 src/api/patch/gen_schema.py --check  # fails if the committed file differs
"""
import argparse
import difflib
import json
import os
import re
import subprocess
import sys

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../.."))
TABLE = os.path.join("src", "api", "patch", "schema_table.rs")


def enabled_api_version():
    """The Kubernetes API version k8s-openapi is built for, as cargo sets it: the
    environment wins over `.cargo/config.toml`'s [env] (which does not force it)."""
    if os.environ.get("K8S_OPENAPI_ENABLED_VERSION"):
        return os.environ["K8S_OPENAPI_ENABLED_VERSION"]
    with open(os.path.join(REPO, ".cargo", "config.toml")) as f:
        m = re.search(r'^K8S_OPENAPI_ENABLED_VERSION\s*=\s*"([^"]+)"', f.read(), re.M)
    if not m:
        sys.exit(
            "gen_schema.py: K8S_OPENAPI_ENABLED_VERSION is set neither in the environment"
            " nor in .cargo/config.toml"
        )
    return m.group(1)


def locked_k8s_openapi():
    """The locked k8s-openapi's version and its source directory."""
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            cwd=REPO,
            check=True,
            stdout=subprocess.PIPE,
        ).stdout
    )
    found = [p for p in metadata["packages"] if p["name"] == "k8s-openapi"]
    if len(found) != 1:
        sys.exit("gen_schema.py: expected one k8s-openapi in Cargo.lock, found %d" % len(found))
    return found[0]["version"], os.path.join(os.path.dirname(found[0]["manifest_path"]), "src")


def rustfmt(text):
    return subprocess.run(
        ["rustfmt", "--edition", "2024", "--emit", "stdout"],
        cwd=REPO,
        input=text,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument(
    "--check",
    action="store_true",
    help="exit non-zero if the committed schema_table.rs differs from a fresh one",
)
args = parser.parse_args()

version, sources = locked_k8s_openapi()
api_module = "v" + enabled_api_version().replace(".", "_")
root = os.path.join(sources, api_module)
if not os.path.isdir(root):
    sys.exit("gen_schema.py: k8s-openapi %s has no %s" % (version, root))
lines = []


def out(line=""):
    lines.append(line)


structs = {}  # type path -> {rust field: (json name, type text)}
merges = {}  # type path -> {rust field: strategy}
resources = []  # (apiVersion, kind, type path)

for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs") or f in ("mod.rs", "list.rs"):
            continue
        text = open(os.path.join(dirpath, f)).read()
        m = re.search(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.S | re.M)
        if not m:
            continue
        module = os.path.relpath(os.path.join(dirpath, f[:-3]), root).split(os.sep)[:-1]
        path = "::".join(module + [m.group(1)])
        fields = {}
        for fm in re.finditer(r"^    pub (\w+): (.*),$", m.group(2), re.M):
            fields[fm.group(1)] = fm.group(2)
        names = dict(
            (rust, json)
            for json, rust in re.findall(r'"([^"]+)" => Field::Key_(\w+),', text)
        )
        structs[path] = {r: (names.get(r, r), t) for r, t in fields.items()}
        strategies = {}
        for sm in re.finditer(
            r"crate::merge_strategies::(list|map)::(\w+)\(\s*&mut self\.(\w+),\s*other\.\w+,?\s*(&\[(.*?)\])?",
            text,
            re.S,
        ):
            kind, how, field, _, keys = sm.groups()
            if how == "map":
                rust_keys = re.findall(r"lhs\.(\w+) ==", keys or "")
                strategies[field] = ("map", rust_keys)
            else:
                strategies[field] = (how, [])
            strategies[field] = (kind,) + strategies[field]
        merges[path] = strategies
        rm = re.search(
            r'const API_VERSION: &\'static str = "([^"]+)";.*?const KIND: &\'static str = "([^"]+)";',
            text,
            re.S,
        )
        if rm and "impl crate::Resource for " + m.group(1) in text:
            resources.append((rm.group(1), rm.group(2), path))


def element(ty):
    found = re.findall(r"crate::([\w:]+)", ty)
    if found and found[-1] in structs:
        return found[-1]
    return None


def shape(ty, strategy):
    if strategy is None:
        return "Shape::Object"
    kind, how, keys = strategy
    if kind == "map":
        return "Shape::AtomicMap" if how == "atomic" else "Shape::Map"
    if how == "atomic":
        return "Shape::AtomicList"
    if how == "set":
        return "Shape::SetList"
    return "Shape::MapList(&[%s])" % ", ".join('"%s"' % k for k in keys)


types = []
for path in sorted(structs):
    entries = []
    item_names = {}
    for rust, (json, ty) in sorted(structs[path].items(), key=lambda kv: kv[1][0]):
        strategy = merges[path].get(rust)
        elem = element(ty)
        if strategy is None and elem is None:
            continue
        if strategy and strategy[1] == "map":
            item = structs.get(elem, {})
            json_keys = [item.get(k, (k,))[0] for k in strategy[2]]
            strategy = (strategy[0], strategy[1], json_keys)
        entries.append(
            '        ("%s", %s, %s),'
            % (json, shape(ty, strategy), '"%s"' % elem if elem else '""')
        )
    if not entries:
        continue
    types.append('    ("%s", &[\n%s\n    ]),' % (path, "\n".join(entries)))

out(
    "// Generated by gen_schema.py from the type definitions of k8s-openapi %s (%s);"
    % (version, api_module)
)
out("// do not edit: regenerate it as the README's \"Generated code\" says.")
out("// Each type: its object, list and map fields as (JSON name, shape, element type).")
out()
out("use super::schema::Shape;")
out()
out("pub(super) type FieldRow = (&'static str, Shape, &'static str);")
out()
out("/// Sorted by type path, for binary search.")
out("pub(super) static TYPES: &[(&str, &[FieldRow])] = &[")
out("\n".join(types))
out("];")
out()
out("/// The type of each top-level kind, by apiVersion and kind; sorted.")
out("pub(super) static KINDS: &[(&str, &str, &str)] = &[")
for api_version, kind, path in sorted(resources):
    out('    ("%s", "%s", "%s"),' % (api_version, kind, path))
out("];")

generated = rustfmt("\n".join(lines) + "\n")
table_path = os.path.join(REPO, TABLE)
if args.check:
    with open(table_path) as f:
        committed = f.read()
    if committed != generated:
        diff = difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "committed " + TABLE,
            "generated from k8s-openapi " + version,
        )
        sys.stderr.writelines(list(diff)[:40])
        sys.exit(
            "%s is not what gen_schema.py generates from the locked k8s-openapi %s (%s): "
            "run `python3 src/api/patch/gen_schema.py` and commit the result"
            % (TABLE, version, api_module)
        )
else:
    with open(table_path, "w") as f:
        f.write(generated)
