#!/usr/bin/env python3
"""Regenerates go_types.rs: every built-in API struct's JSON fields in Go's order.

Upstream's API server writes an object with Go's encoding/json, so its keys come in
the order of the Go struct's fields (embedded `json:",inline"` structs flattened in
place) and `omitempty`/`omitzero` decide which empty fields are left out. Neither is
in the OpenAPI documents k8s-openapi is generated from, so this reads the Go sources
themselves: the `types.go` files (and the rest of each package's type declarations)
of kubernetes/api, kubernetes/apimachinery (meta/v1), kubernetes/apiextensions-apiserver
and kubernetes/kube-aggregator, at the tags below. The group-versions covered are those
the locked k8s-openapi generates for the API version `.cargo/config.toml` enables
(the types rind knows), plus meta.k8s.io/v1 and apidiscovery.k8s.io/v2.

The sources are read from git repositories (a bare clone is enough) holding the tags:

    git clone --bare https://github.com/kubernetes/api api.git
    git clone --bare https://github.com/kubernetes/apimachinery apimachinery.git
    git clone --bare https://github.com/kubernetes/apiextensions-apiserver apiextensions.git
    git clone --bare https://github.com/kubernetes/kube-aggregator aggregator.git
    python3 src/api/json/gen_go_types.py --api api.git --apimachinery apimachinery.git \\
        --apiextensions apiextensions.git --aggregator aggregator.git

It needs the network (for the clones) and cargo (for `cargo metadata`), so CI cannot
check it the way it checks gen_schema.py; regenerate it when the pinned Kubernetes
version moves, and commit the result (it goes through rustfmt).
"""
import argparse
import json
import os
import re
import subprocess
import sys

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../.."))
TABLE = os.path.join("src", "api", "json", "go_types.rs")

# The Kubernetes 1.37 sources the table is made from. kube-aggregator had no 1.37 beta
# tag when the table was made; its apiregistration/v1 types have not changed since.
TAGS = {
    "api": "v0.37.0-beta.0",
    "apimachinery": "v0.37.0-beta.0",
    "apiextensions": "v0.37.0-beta.0",
    "aggregator": "v0.37.0-alpha.2",
}
MODULES = {
    "api": "k8s.io/api",
    "apimachinery": "k8s.io/apimachinery",
    "apiextensions": "k8s.io/apiextensions-apiserver",
    "aggregator": "k8s.io/kube-aggregator",
}
META = "k8s.io/apimachinery/pkg/apis/meta/v1"
RUNTIME = "k8s.io/apimachinery/pkg/runtime"
APIEXT = "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

# Types with their own MarshalJSON, written as they marshal: (Rust `Special`, whether
# it is a Go struct, which `omitempty` never leaves out). The zero each writes lives
# with the enum in Rust.
SPECIAL = {
    (META, "Time"): "Time",
    (META, "MicroTime"): "Time",
    (META, "Duration"): "Duration",
    (META, "FieldsV1"): "FieldsV1",
    ("k8s.io/apimachinery/pkg/api/resource", "Quantity"): "Quantity",
    ("k8s.io/apimachinery/pkg/util/intstr", "IntOrString"): "IntOrString",
    (RUNTIME, "RawExtension"): "RawExtension",
    (RUNTIME, "Unknown"): "RawExtension",
    (RUNTIME, "Object"): "Any",
    (APIEXT, "JSON"): "Json",
    (APIEXT, "JSONSchemaPropsOrArray"): "SchemaOrArray",
    (APIEXT, "JSONSchemaPropsOrBool"): "SchemaOrBool",
    (APIEXT, "JSONSchemaPropsOrStringArray"): "SchemaOrStringArray",
}
PRIMITIVE = {
    "string": "Ty::Str",
    "bool": "Ty::Bool",
    "float32": "Ty::Float",
    "float64": "Ty::Float",
}
for bits in ("", "8", "16", "32", "64"):
    PRIMITIVE["int" + bits] = "Ty::Int"
    PRIMITIVE["uint" + bits] = "Ty::Int"


def fail(message):
    sys.exit("gen_go_types.py: " + message)


class Sources:
    """Reads files of one module at its tag straight from git."""

    def __init__(self, key, git_dir):
        self.key, self.git_dir, self.tag = key, git_dir, TAGS[key]
        self.module = MODULES[key]
        run = subprocess.run(
            ["git", "--git-dir", git_dir, "rev-parse", "--verify", self.tag + "^{commit}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if run.returncode != 0:
            fail("%s has no tag %s (%s)" % (git_dir, self.tag, run.stderr.strip()))

    def files(self, directory):
        out = subprocess.run(
            ["git", "--git-dir", self.git_dir, "ls-tree", "--name-only", self.tag, directory + "/"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout.split()
        return [
            f
            for f in out
            if f.endswith(".go")
            and not f.endswith("_test.go")
            and not os.path.basename(f).startswith(("zz_generated", "generated."))
            and "swagger_doc" not in f
        ]

    def read(self, path):
        return subprocess.run(
            ["git", "--git-dir", self.git_dir, "show", "%s:%s" % (self.tag, path)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout


def strip_comments(text):
    """Go source without comments (string and raw-string literals kept intact)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "`\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if c != "`" and text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Package:
    def __init__(self, path, text_by_file):
        self.path = path
        self.imports = {}  # alias -> import path
        self.structs = {}  # name -> [raw field lines]
        self.named = {}  # name -> type expression
        self.interfaces = set()
        self.group = None
        for text in text_by_file:
            self.parse_file(strip_comments(text))

    def parse_file(self, text):
        imports = {}
        for block in re.findall(r"^import\s*\((.*?)^\)", text, re.S | re.M):
            for line in block.splitlines():
                self.add_import(imports, line)
        for line in re.findall(r"^import\s+([^(\n].*)$", text, re.M):
            self.add_import(imports, line)
        file_pkg = self.path
        m = re.search(r'^const GroupName\s*=\s*"([^"]*)"', text, re.M)
        if m:
            self.group = m.group(1)
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if re.match(r"^type\s*\($", line):
                i += 1
                while i < len(lines) and lines[i].strip() != ")":
                    i = self.parse_decl(lines, i, lines[i].strip(), imports, file_pkg)
                i += 1
            elif line.startswith("type "):
                i = self.parse_decl(lines, i, line[5:].strip(), imports, file_pkg)
            else:
                i += 1

    def add_import(self, imports, line):
        line = line.strip()
        m = re.match(r'^(?:(\w+|\.|_)\s+)?"([^"]+)"$', line)
        if not m:
            return
        alias, path = m.group(1), m.group(2)
        alias = alias or path.rsplit("/", 1)[-1]
        imports[alias] = path
        self.imports.setdefault(alias, path)
        if self.imports[alias] != path:
            fail("%s: import alias %s names both %s and %s" % (self.path, alias, self.imports[alias], path))

    def parse_decl(self, lines, i, decl, imports, file_pkg):
        """Parses the declaration starting at lines[i]; returns the next line index."""
        if not decl:
            return i + 1
        m = re.match(r"^(\w+)(\[.*\])?\s+(struct|interface)\s*\{(.*)$", decl)
        if m:
            name, generic, kind, rest = m.groups()
            body = []
            if rest.strip() == "}":
                i += 1
            else:
                i += 1
                depth = 1
                while i < len(lines):
                    stripped = lines[i].strip()
                    depth += stripped.count("{") - stripped.count("}")
                    if depth <= 0:
                        break
                    body.append(stripped)
                    i += 1
                i += 1
            if generic:
                return i
            if kind == "interface":
                self.interfaces.add(name)
            else:
                self.structs[name] = [b for b in body if b]
            return i
        m = re.match(r"^(\w+)\s*=?\s*(.+)$", decl)
        if not m:
            fail("%s: cannot read type declaration %r" % (self.path, decl))
        self.named[m.group(1)] = m.group(2).strip()
        return i + 1


class Reader:
    def __init__(self, sources):
        self.sources = sources  # key -> Sources
        self.packages = {}

    def holds(self, path):
        return any(path == s.module or path.startswith(s.module + "/") for s in self.sources.values())

    def package(self, path):
        if path in self.packages:
            return self.packages[path]
        for src in self.sources.values():
            if path == src.module or path.startswith(src.module + "/"):
                directory = path[len(src.module) + 1 :]
                files = src.files(directory)
                if not files:
                    fail("%s has no Go files at %s" % (src.module, directory))
                pkg = Package(path, [src.read(f) for f in files])
                self.packages[path] = pkg
                return pkg
        fail("no source repository holds package %s" % path)


class Table:
    """Struct entries in the order first reached; type expressions as Rust text."""

    def __init__(self, reader):
        self.reader = reader
        self.index = {}  # (pkg, name) -> index
        self.entries = []  # [(pkg, name, fields or None while being built)]

    def struct_index(self, pkg, name):
        key = (pkg, name)
        if key in self.index:
            return self.index[key]
        at = len(self.entries)
        self.index[key] = at
        self.entries.append([pkg, name, None])
        try:
            self.entries[at][2] = self.fields(pkg, name)
        except SystemExit:
            print("  while reading %s.%s" % (pkg, name), file=sys.stderr)
            raise
        return at

    def fields(self, pkg_path, name):
        """The struct's JSON fields in Go's order: (json name, omit, rust type)."""
        found = []  # (json name, omit, ty, depth, tagged)
        self.collect(pkg_path, name, 0, found, set())
        by_name = {}
        for entry in found:
            by_name.setdefault(entry[0], []).append(entry)
        out = []
        for entry in found:
            rivals = by_name[entry[0]]
            shallowest = min(r[3] for r in rivals)
            winners = [r for r in rivals if r[3] == shallowest]
            if len(winners) > 1:
                tagged = [r for r in winners if r[4]]
                winners = tagged if len(tagged) == 1 else []
            if winners and winners[0] is entry:
                out.append(entry[:3])
        return out

    def collect(self, pkg_path, name, depth, found, seen):
        if (pkg_path, name) in seen:
            fail("%s.%s embeds itself" % (pkg_path, name))
        seen = seen | {(pkg_path, name)}
        pkg = self.reader.package(pkg_path)
        if name not in pkg.structs:
            fail("%s has no struct %s" % (pkg_path, name))
        for line in pkg.structs[name]:
            m = re.match(r"^([^`]*?)\s*(`[^`]*`)?$", line)
            decl, tag = m.group(1).strip(), (m.group(2) or "").strip("`")
            parts = decl.split(None, 1)
            json_tag = re.search(r'\bjson:"([^"]*)"', tag)
            if json_tag is None and tag and "json:" in tag:
                fail("%s.%s: unreadable json tag in %r" % (pkg_path, name, line))
            options = json_tag.group(1).split(",") if json_tag else None
            if options == ["-"]:
                continue
            if len(parts) == 1:
                # Embedded: promoted in place unless its tag names it.
                embedded = parts[0].lstrip("*")
                if options and options[0]:
                    fields_of = [(options[0], options[1:], parts[0], True)]
                else:
                    target_pkg, target = self.resolve_alias(pkg, embedded)
                    if (target_pkg, target) in SPECIAL or target not in self.reader.package(target_pkg).structs:
                        fail("%s.%s embeds %s, which is not a plain struct" % (pkg_path, name, embedded))
                    self.collect(target_pkg, target, depth + 1, found, seen)
                    continue
            else:
                names = [n.strip() for n in parts[0].split(",")]
                if len(names) > 1:
                    fail("%s.%s: several fields in one line %r" % (pkg_path, name, line))
                go_name, expr = names[0], parts[1]
                if not go_name[0].isupper():
                    continue
                if options is None:
                    fields_of = [(go_name, [], expr, False)]
                else:
                    fields_of = [(options[0] or go_name, options[1:], expr, True)]
            for json_name, opts, expr, tagged in fields_of:
                if "omitzero" in opts:
                    omit = "Omit::Zero"
                elif "omitempty" in opts:
                    omit = "Omit::Empty"
                else:
                    omit = "Omit::Never"
                found.append((json_name, omit, self.ty(pkg, expr), depth, tagged))

    def embeds(self, pkg, name, wanted):
        """Whether struct `name` of `pkg` embeds (inlines) the struct `wanted`."""
        for line in pkg.structs[name]:
            m = re.match(r"^\*?([\w.]+)\s*(`[^`]*`)?$", line)
            if m and not re.search(r'json:"[^",]', m.group(2) or ""):
                if not self.reader.holds(self.resolve_name(pkg, m.group(1))[0]):
                    continue  # time.Time in meta/v1's Time, for one
                if self.resolve_alias(pkg, m.group(1)) == wanted:
                    return True
        return False

    def resolve_alias(self, pkg, expr):
        """(package, name) of the type `expr` names, through `type X = Y` aliases."""
        target_pkg, name = self.resolve_name(pkg, expr)
        target = self.reader.package(target_pkg)
        while name not in target.structs and name in target.named:
            target_pkg, name = self.resolve_name(target, target.named[name])
            target = self.reader.package(target_pkg)
        return target_pkg, name

    def resolve_name(self, pkg, expr):
        if "." in expr:
            alias, name = expr.split(".", 1)
            if alias not in pkg.imports:
                fail("%s: unknown package %s in %s" % (pkg.path, alias, expr))
            return pkg.imports[alias], name
        return pkg.path, expr

    def ty(self, pkg, expr):
        expr = expr.strip()
        if expr.startswith("*"):
            return "Ty::Ptr(&%s)" % self.ty(pkg, expr[1:])
        if expr == "[]byte":
            return "Ty::Bytes"
        if expr.startswith("[]"):
            return "Ty::Slice(&%s)" % self.ty(pkg, expr[2:])
        if expr.startswith("map["):
            depth, i = 0, 3
            while True:
                depth += {"[": 1, "]": -1}.get(expr[i], 0)
                if depth == 0:
                    break
                i += 1
            return "Ty::Map(&%s)" % self.ty(pkg, expr[i + 1 :])
        if expr in ("interface{}", "any"):
            return "Ty::Special(Special::Any)"
        if expr in PRIMITIVE:
            return PRIMITIVE[expr]
        if not re.match(r"^[\w.]+$", expr):
            fail("%s: cannot read type %r" % (pkg.path, expr))
        target_pkg, name = self.resolve_name(pkg, expr)
        special = SPECIAL.get((target_pkg, name))
        if special:
            if special.startswith("Schema"):
                props = self.struct_index(APIEXT, "JSONSchemaProps")
                return "Ty::Special(Special::%s(%d))" % (special, props)
            return "Ty::Special(Special::%s)" % special
        target = self.reader.package(target_pkg)
        if name in target.structs:
            return "Ty::Struct(%d)" % self.struct_index(target_pkg, name)
        if name in target.interfaces:
            return "Ty::Special(Special::Any)"
        if name in target.named:
            return self.ty(target, target.named[name])
        fail("%s: %s names no type in %s" % (pkg.path, expr, target_pkg))


def k8s_openapi_group_versions():
    """(group dir, version) of every API group-version the locked k8s-openapi generates
    for the enabled Kubernetes version, as gen_schema.py finds it."""
    with open(os.path.join(REPO, ".cargo", "config.toml")) as f:
        m = re.search(r'^K8S_OPENAPI_ENABLED_VERSION\s*=\s*"([^"]+)"', f.read(), re.M)
    version = os.environ.get("K8S_OPENAPI_ENABLED_VERSION") or (m and m.group(1))
    if not version:
        fail("K8S_OPENAPI_ENABLED_VERSION is set neither in the environment nor in .cargo/config.toml")
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
        fail("expected one k8s-openapi in Cargo.lock, found %d" % len(found))
    root = os.path.join(
        os.path.dirname(found[0]["manifest_path"]), "src", "v" + version.replace(".", "_")
    )
    api = os.path.join(root, "api")
    pairs = []
    for group in sorted(os.listdir(api)):
        if os.path.isdir(os.path.join(api, group)):
            for ver in sorted(os.listdir(os.path.join(api, group))):
                if os.path.isdir(os.path.join(api, group, ver)):
                    pairs.append(("k8s.io/api/%s/%s" % (group, ver)))
    return found[0]["version"], version, pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for key in TAGS:
        parser.add_argument("--" + key, required=True, metavar="GIT_DIR",
                            help="a clone of %s holding tag %s" % (MODULES[key], TAGS[key]))
    args = parser.parse_args()
    sources = {key: Sources(key, getattr(args, key)) for key in TAGS}
    reader = Reader(sources)
    table = Table(reader)
    openapi_version, k8s_version, packages = k8s_openapi_group_versions()
    # Kinds: (apiVersion, kind) -> struct, for every struct with TypeMeta inline.
    packages = packages + [
        APIEXT,
        "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1",
        "k8s.io/api/apidiscovery/v2",
        META,
    ]
    kinds = {}
    for path in packages:
        directory = path[len("k8s.io/api/") :] if path.startswith("k8s.io/api/") else None
        if directory and not sources["api"].files(directory):
            print("gen_go_types.py: k8s-openapi has %s, which kubernetes/api %s lacks; skipped"
                  % (directory, TAGS["api"]), file=sys.stderr)
            continue
        pkg = reader.package(path)
        group = "meta.k8s.io" if path == META else pkg.group
        if group is None:
            fail("%s declares no GroupName" % path)
        version = path.rsplit("/", 1)[-1]
        api_version = "%s/%s" % (group, version) if group else version
        for name in sorted(pkg.structs):
            embeds_type_meta = table.embeds(pkg, name, (META, "TypeMeta"))
            if embeds_type_meta:
                kinds[(api_version, name)] = table.struct_index(path, name)
                if path == META:
                    # The core group serves meta/v1's Status and discovery documents as `v1`.
                    kinds.setdefault(("v1", name), kinds[(api_version, name)])

    lines = []
    out = lines.append
    out("// Generated by gen_go_types.py from the Go types of kubernetes/api %s," % TAGS["api"])
    out("// kubernetes/apimachinery %s, kubernetes/apiextensions-apiserver %s and"
        % (TAGS["apimachinery"], TAGS["apiextensions"]))
    out("// kubernetes/kube-aggregator %s, for the group-versions k8s-openapi %s generates"
        % (TAGS["aggregator"], openapi_version))
    out("// for Kubernetes %s; do not edit: regenerate it as the README's \"Generated code\" says." % k8s_version)
    out("// Each struct: its JSON fields in Go's order, with the field indices by a key made")
    out("// of their names' length and first, middle and last bytes (for lookups), and those")
    out("// written even when absent (not omitted when zero).")
    out("")
    out("use super::table::{Field, Omit, Special, Struct, Ty};")
    out("")
    out("pub(super) static STRUCTS: &[Struct] = &[")
    for at, (pkg, name, fields) in enumerate(table.entries):
        by_hash = sorted((name_key(fields[i][0]), i) for i in range(len(fields)))
        always = [
            i
            for i, (_, omit, ty) in enumerate(fields)
            if omit == "Omit::Never"
            or (omit == "Omit::Empty" and written_when_zero(ty))
        ]
        out("    // %d: %s.%s" % (at, pkg, name))
        out("    Struct {")
        out("        fields: &[")
        for json_name, omit, ty in fields:
            out('            Field("%s", %s, %s),' % (json_name, omit, ty))
        out("        ],")
        out("        by_hash: &[%s]," % ", ".join("(%d, %d)" % pair for pair in by_hash))
        out("        always: &[%s]," % ", ".join(map(str, always)))
        out("    },")
    out("];")
    out("")
    out("/// The struct of each kind, by apiVersion and kind; sorted for binary search.")
    out("pub(super) static KINDS: &[(&str, &str, u16)] = &[")
    for (api_version, kind), at in sorted(kinds.items()):
        out('    ("%s", "%s", %d),' % (api_version, kind, at))
    out("];")
    if len(table.entries) > 65535:
        fail("more structs than a u16 indexes")
    generated = subprocess.run(
        ["rustfmt", "--edition", "2024", "--emit", "stdout"],
        cwd=REPO,
        input="\n".join(lines) + "\n",
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    with open(os.path.join(REPO, TABLE), "w") as f:
        f.write(generated)
    print("gen_go_types.py: %d structs, %d kinds" % (len(table.entries), len(kinds)), file=sys.stderr)


def name_key(name):
    """The lookup key of a field name, as `table::name_key` computes it: its length and
    its first, middle and last bytes (names that share them are told apart by
    comparing the names)."""
    b = name.encode()
    return ((len(b) & 0xFF) << 24) | (b[0] << 16) | (b[len(b) // 2] << 8) | b[-1]


def written_when_zero(ty):
    """Whether Go writes a field of this type under `omitempty` when it is zero: structs
    (and the special types, all structs but `Any`) are never "empty" to encoding/json."""
    return ty.startswith("Ty::Struct") or (
        ty.startswith("Ty::Special") and ty != "Ty::Special(Special::Any)"
    )


if __name__ == "__main__":
    main()
