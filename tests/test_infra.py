"""The Terraform in infra/ deploys what the code needs, checked offline.

Nothing here reaches Google Cloud or the Terraform registry: ``terraform fmt``
checks formatting, python-hcl2 parses every file (in ``.venv-hcl``), checkov
checks security (in ``.venv-checkov``; the two cannot share a virtualenv),
and the rest reads the code with ``ast`` and compares it with the parsed HCL.
Neither tool checks attribute names against the google provider's schema;
``terraform validate`` does, and it runs in Cloud Build (cloudbuild.yaml).

Run ``bash devstack/setup_infra.sh`` once to create the two tool virtualenvs.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MANIFEST = json.loads((ROOT / "functions" / "manifest.json").read_text())
HCL_PYTHON = ROOT / ".venv-hcl" / "bin" / "python"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SETTINGS = ROOT / "shared" / "settings.py"
# Code that runs against production: the functions, the library, ops.
DEPLOYED_CODE = ("functions", "shared", "ops")
SECRETISH = re.compile(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|API_KEY|PRIVATE_KEY")
TOOL_TIMEOUT_S = 120

_HCL_TO_JSON = r"""
import json, sys
import hcl2
from hcl2 import SerializationOptions

opts = SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True)
out = {}
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            out[path] = hcl2.load(f, serialization_options=opts)
    except Exception as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        sys.exit(1)
json.dump(out, sys.stdout)
"""


def _tool(path: Path) -> str:
    if not path.exists():
        pytest.fail(
            f"Expected {path.relative_to(ROOT)}; run bash devstack/setup_infra.sh."
        )
    return str(path)


def _norm(expr) -> str:
    """An HCL expression as text without whitespace, for comparisons."""
    return re.sub(r"\s+", "", str(expr))


def _block(body: dict, name: str) -> dict:
    """A nested block (python-hcl2 gives each block type as a list)."""
    value = body[name]
    return value[0] if isinstance(value, list) else value


@dataclass
class Terraform:
    """The parsed configuration, merged across files."""

    files: dict
    locals: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)  # type -> name -> body
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for doc in self.files.values():
            for block in doc.get("locals", []):
                self.locals.update(block)
            for block in doc.get("variable", []):
                self.variables.update(block)
            for kind, into in (("resource", self.resources), ("data", self.data)):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        into.setdefault(rtype, {}).update(named)

    def resource(self, rtype: str, name: str) -> dict:
        found = self.resources.get(rtype, {}).get(name)
        assert found is not None, f"Expected resource {rtype}.{name} in infra/."
        return found


@pytest.fixture(scope="module")
def tf() -> Terraform:
    paths = sorted(str(p) for p in INFRA.glob("*.tf"))
    out = subprocess.run(
        [_tool(HCL_PYTHON), "-c", _HCL_TO_JSON, *paths],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
    )
    assert out.returncode == 0, f"Expected every .tf file to parse, found: {out.stderr}"
    return Terraform(json.loads(out.stdout))


# -- Python source helpers ----------------------------------------------------


def _python_files(*dirs: str) -> list[Path]:
    return sorted(
        p
        for d in dirs
        for p in (ROOT / d).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _string_constants() -> dict[str, str]:
    """Module-level NAME = "text" across the deployed code; names the code
    uses for collections and fields resolve through this."""
    found: dict[str, set[str]] = {}
    for path in _python_files(*DEPLOYED_CODE):
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                found.setdefault(node.targets[0].id, set()).add(node.value.value)
    return {k: next(iter(v)) for k, v in found.items() if len(v) == 1}


def _imports(path: Path) -> set[str]:
    """Project modules that ``path`` imports (shared.*, functions.*, ops.*)."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    project = set()
    for name in names:
        parts = name.split(".")
        if parts[0] not in DEPLOYED_CODE:
            continue
        for i in range(1, len(parts) + 1):  # a package's __init__ runs too
            project.add(".".join(parts[:i]))
    return project


def _closure(entry: Path) -> list[Path]:
    """Every project module a function's main.py imports, transitively."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            found = _module_path(name)
            if found is not None:
                todo.append(found)
    return sorted(seen)


# -- Formatting, parsing, security -------------------------------------------


def test_terraform_files_are_formatted():
    terraform = shutil.which("terraform")
    assert terraform, "Expected terraform on PATH for `terraform fmt -check`."
    out = subprocess.run(
        [terraform, "fmt", "-check", "-diff", "-recursive", str(INFRA)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
    )

    assert out.returncode == 0, f"Expected `terraform fmt` clean files:\n{out.stdout}"


def test_every_terraform_file_parses(tf):
    parsed = {Path(p).name for p, doc in tf.files.items() if doc}

    assert parsed == {p.name for p in INFRA.glob("*.tf")}


def test_checkov_parses_the_files_and_finds_no_failed_check():
    out = subprocess.run(
        [
            _tool(CHECKOV),
            "--skip-download",
            "-d",
            str(INFRA),
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        cwd=ROOT,
    )
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r["check_type"]: r for r in reports}
    terraform = by_type.get("terraform")

    # checkov exits 0 when it cannot parse: make sure it read the resources.
    assert terraform is not None, f"Expected a terraform report, found {list(by_type)}."
    assert terraform["summary"]["parsing_errors"] == 0
    assert terraform["summary"]["resource_count"] > 0
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for r in reports
        for c in r["results"].get("failed_checks", [])
    ]
    assert failed == [], "Expected no failed checks; fix them or skip with a reason."
    assert out.returncode == 0, out.stderr[-2000:]


def test_every_checkov_skip_gives_its_reason():
    skips = [
        (path.name, m.group(1), m.group(2).strip())
        for path in INFRA.glob("*.tf")
        for m in re.finditer(
            r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?", path.read_text()
        )
    ]
    unexplained = [(f, check) for f, check, why in skips if len(why or "") < 20]

    assert skips, "Expected the justified skips to be found."
    assert unexplained == []


def test_cloud_build_tests_then_plans_then_applies_on_the_apply_branch():
    import yaml

    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in build["steps"]}

    assert "make test" in steps["test"]["script"]
    assert "test" in steps["plan"]["waitFor"]
    assert "terraform plan" in steps["plan"]["script"]
    assert steps["apply"]["waitFor"] == ["plan"]
    assert '"${BRANCH_NAME:-}" != "${_APPLY_BRANCH}"' in steps["apply"]["script"]
    assert "node snippet/build.mjs" in steps["snippet"]["script"]


# -- Variables and outputs ----------------------------------------------------


def test_every_variable_has_a_type_a_description_and_validation(tf):
    missing = []
    for name, body in tf.variables.items():
        if not body.get("type") or not body.get("description"):
            missing.append(f"{name}: type and description")
        # A bool has nothing to validate.
        is_bool = _norm(body.get("type")) in ("bool", "${bool}")
        if not is_bool and not body.get("validation"):
            missing.append(f"{name}: validation")

    assert missing == []


def test_outputs_give_the_function_urls_and_the_snippet_tag(tf):
    outputs = {}
    for doc in tf.files.values():
        for block in doc.get("output", []):
            outputs.update(block)

    assert {"function_urls", "snippet_tag", "snippet_tags"} <= set(outputs)
    assert "data-site" in _norm(tf.locals["snippet_tags"])
    assert "data-endpoint" in _norm(tf.locals["snippet_tags"])


def test_site_ids_are_validated_with_the_codes_pattern(tf):
    from shared.sites import SITE_ID

    conditions = [_norm(v["condition"]) for v in tf.variables["sites"]["validation"]]

    assert any(_norm(SITE_ID.pattern) in c for c in conditions)


# -- Functions ----------------------------------------------------------------


def _entry_decorator(name: str, entry_point: str) -> str | None:
    tree = ast.parse((ROOT / "functions" / name / "main.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            for dec in node.decorator_list:
                text = ast.unparse(dec)
                if text.startswith("functions_framework."):
                    return text.split(".", 1)[1]
            return "none"
    return None


def test_terraform_deploys_the_manifest_with_for_each(tf):
    manifest_expr = _norm(tf.locals["manifest"])
    functions_expr = _norm(tf.locals["functions"])
    fn = tf.resource("google_cloudfunctions2_function", "function")

    assert manifest_expr == _norm(
        '${jsondecode(file("${local.repo_root}/functions/manifest.json"))}'
    )
    assert _norm(tf.locals["repo_root"]) == "${path.module}/.."
    assert functions_expr.startswith("${{forname,fninlocal.manifest.functions:name=>")
    assert _norm(fn["for_each"]) == "${local.functions}"
    assert (
        _norm(_block(fn, "build_config")["entry_point"]) == "${each.value.entry_point}"
    )
    assert _norm(_block(fn, "build_config")["runtime"]) == "python312"
    # Every function resource comes from the manifest: none is written out.
    assert list(tf.resources["google_cloudfunctions2_function"]) == ["function"]


def test_archives_hold_main_py_at_the_root_with_shared_and_requirements(tf):
    archive = tf.data["archive_file"]["source"]
    dynamic = {
        _norm(d["source"]["for_each"]): _block(d["source"], "content")["filename"]
        for d in archive["dynamic"]
    }
    fixed = [s["filename"] for s in archive["source"]]
    own = '${fileset("${local.repo_root}/functions/${each.key}",local.source_pattern)}'

    assert _norm(archive["for_each"]) == "${local.functions}"
    # The function's own files at the root (main.py among them), shared/
    # beside them, requirements.txt at the root.
    assert dynamic[own] == "${source.value}"
    assert dynamic["${local.shared_files}"] == "shared/${source.value}"
    assert fixed == ["requirements.txt"]
    assert _norm(tf.locals["shared_files"]) == (
        '${fileset("${local.repo_root}/shared",local.source_pattern)}'
    )
    obj = tf.resource("google_storage_bucket_object", "source")
    assert "output_md5" in _norm(obj["name"]), "Expected archives named by their MD5."


def test_trigger_mapping_pushes_pubsub_functions_and_exposes_http_ones(tf):
    push = tf.resource("google_pubsub_subscription", "push")
    fn = tf.resource("google_cloudfunctions2_function", "function")
    public = tf.resource("google_cloud_run_v2_service_iam_member", "public")

    assert _norm(tf.locals["pubsub_functions"]) == _norm(
        '${{for k, v in local.functions : k => v if v.trigger == "pubsub"}}'
    )
    assert _norm(tf.locals["http_functions"]) == _norm(
        '${{for k, v in local.functions : k => v if v.trigger == "http"}}'
    )
    assert _norm(push["for_each"]) == "${local.pubsub_functions}"
    assert _norm(push["topic"]) == "${google_pubsub_topic.topic[each.value.topic].id}"
    assert "each.value.topic" in _norm(_block(push, "push_config")["push_endpoint"])
    assert (
        _norm(public["for_each"]) == "${{fork,vinlocal.http_functions:k=>vifv.public}}"
    )
    assert _norm(public["member"]) == "allUsers"
    ingress = _norm(_block(fn, "service_config")["ingress_settings"])
    assert 'each.value.trigger=="http"' in ingress
    assert _norm(tf.locals["functions"]).count("public=try(fn.public,false)") == 1


def test_every_manifest_function_has_its_entry_point_and_trigger_shape():
    problems = []
    for name, spec in MANIFEST["functions"].items():
        expected = {"http": "http", "pubsub": "cloud_event"}.get(spec["trigger"])
        found = _entry_decorator(name, spec["entry_point"])
        if found != expected:
            problems.append(
                f"{name}: expected @functions_framework.{expected} on "
                f"{spec['entry_point']}, found {found}"
            )
        if spec["trigger"] == "pubsub" and spec.get("topic") not in MANIFEST["topics"]:
            problems.append(f"{name}: topic {spec.get('topic')!r} is not in topics")
        for topic in spec.get("publishes", []):
            if topic not in MANIFEST["topics"]:
                problems.append(f"{name}: publishes to unknown topic {topic!r}")

    assert problems == []


def test_every_function_directory_is_in_the_manifest():
    dirs = {p.parent.name for p in (ROOT / "functions").glob("*/main.py")}

    assert dirs == set(MANIFEST["functions"])


def test_push_delivery_mirrors_the_local_stack(tf):
    from devstack import stack

    push = tf.resource("google_pubsub_subscription", "push")

    assert tf.locals["max_delivery_attempts"] == stack.MAX_DELIVERY_ATTEMPTS
    assert _block(push, "retry_policy")["minimum_backoff"] == "1s"
    assert _block(push, "retry_policy")["maximum_backoff"] == "10s"
    assert "oidc_token" in _block(push, "push_config")
    assert _norm(_block(push, "dead_letter_policy")["dead_letter_topic"]) == (
        "${google_pubsub_topic.dead_letter[each.value.topic].id}"
    )
    dead = tf.resource("google_pubsub_topic", "dead_letter")
    assert _norm(dead["name"]) == "${each.key}-dead-letter"
    assert _norm(tf.locals["topics"]) == "${toset(local.manifest.topics)}"


def test_the_pubsub_service_agent_grants_are_written_out(tf):
    publisher = tf.resource(
        "google_pubsub_topic_iam_member", "pubsub_agent_dead_letter"
    )
    subscriber = tf.resource(
        "google_pubsub_subscription_iam_member", "pubsub_agent_source"
    )

    assert _norm(publisher["for_each"]) == "${google_pubsub_topic.dead_letter}"
    assert publisher["role"] == "roles/pubsub.publisher"
    assert _norm(subscriber["for_each"]) == "${google_pubsub_subscription.push}"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert "gcp-sa-pubsub" in _norm(tf.locals["pubsub_agent"])


# -- BigQuery -----------------------------------------------------------------


def test_every_table_and_view_file_is_deployed(tf):
    from shared import warehouse

    table = tf.resource("google_bigquery_table", "table")
    view = tf.resource("google_bigquery_table", "view")

    assert warehouse.TABLES_DIR == ROOT / "shared" / "bigquery" / "tables"
    assert warehouse.VIEWS_DIR == ROOT / "shared" / "bigquery" / "views"
    assert _norm(tf.locals["tables_dir"]) == "${local.repo_root}/shared/bigquery/tables"
    assert _norm(tf.locals["views_dir"]) == "${local.repo_root}/shared/bigquery/views"
    assert 'fileset(local.tables_dir,"*.json")' in _norm(tf.locals["tables"])
    assert 'fileset(local.views_dir,"*.sql")' in _norm(tf.locals["views"])
    assert '"{dataset}"' in _norm(tf.locals["views"])
    assert _norm(table["for_each"]) == "${local.tables}"
    assert _norm(table["schema"]) == "${jsonencode(each.value.fields)}"
    assert _norm(view["for_each"]) == "${local.views}"


def test_every_table_file_has_what_terraform_reads():
    problems = []
    for path in sorted((ROOT / "shared" / "bigquery" / "tables").glob("*.json")):
        spec = json.loads(path.read_text())
        top = {f["name"]: f for f in spec.get("fields", [])}
        if not spec.get("description") or not top:
            problems.append(f"{path.name}: description and fields")
        part = spec.get("partitioning")
        if part and top.get(part.get("field"), {}).get("type") not in (
            "TIMESTAMP",
            "DATE",
        ):
            problems.append(
                f"{path.name}: partitioning field must be a TIMESTAMP or DATE"
            )
        for column in spec.get("clustering", []):
            if column not in top:
                problems.append(
                    f"{path.name}: clustering column {column} is not a field"
                )

    assert problems == []


# -- Firestore ----------------------------------------------------------------


EQUALITY = ("==", "in")
RANGE = ("<", "<=", ">", ">=", "!=", "not-in")


@dataclass
class Query:
    where: str  # file:line
    collection: str | None
    filters: list[tuple[str, str]] = field(default_factory=list)
    orders: list[tuple[str, str]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


class _QueryScanner:
    """Finds Firestore query chains: ``<x>.collection(C)`` followed by
    ``.where(...)`` / ``.order_by(...)``, also when built up step by step in
    one function (``query = query.where(...)``).

    Note: a query whose start is passed in from another function cannot be
    followed; the scanner sees only chains that begin at ``.collection()``.
    """

    def __init__(self, constants: dict[str, str]) -> None:
        self.constants = constants

    def text(self, node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        if isinstance(node, ast.Attribute):
            return self.constants.get(node.attr)
        return None

    def scan(self, path: Path) -> list[Query]:
        tree = ast.parse(path.read_text())
        queries = []
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                queries.extend(self._scan_function(path, func))
        return queries

    def _scan_function(self, path: Path, func) -> list[Query]:
        assigns = [
            (n.lineno, n.targets[0].id, n.value)
            for n in ast.walk(func)
            if isinstance(n, ast.Assign)
            and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name)
        ]
        tops, inner = [], set()
        for node in ast.walk(func):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("where", "order_by")
            ):
                tops.append(node)
        chains = {}
        for node in tops:
            steps, base = self._unwind(node, assigns, inner)
            if base is not None:
                chains[node] = (steps, base)
        rel = path.relative_to(ROOT)
        return [
            self._query(f"{rel}:{node.lineno}", steps, base)
            for node, (steps, base) in chains.items()
            if node not in inner
        ]

    def _unwind(self, node, assigns, inner):
        """Steps from the collection to ``node``, and the collection call."""
        steps = []
        cur = node
        while True:
            if isinstance(cur, ast.Call) and isinstance(cur.func, ast.Attribute):
                attr = cur.func.attr
                if attr in ("collection", "collection_group"):
                    return list(reversed(steps)), cur
                if attr in ("where", "order_by"):
                    steps.append(cur)
                if cur is not node and attr in ("where", "order_by"):
                    inner.add(cur)
                cur = cur.func.value
            elif isinstance(cur, ast.Name):
                earlier = [
                    v
                    for line, name, v in assigns
                    if name == cur.id and line < getattr(cur, "lineno", 0)
                ]
                if not earlier:
                    return steps, None
                cur = earlier[-1]
                inner.add(cur)
            else:
                return steps, None

    def _query(self, where: str, steps, base) -> Query:
        query = Query(where, self.text(base.args[0]) if base.args else None)
        if base.func.attr == "collection_group":
            query.unsupported.append("collection_group (add a COLLECTION_GROUP index)")
        for call in steps:
            if call.func.attr == "order_by":
                path = self.text(call.args[0]) if call.args else None
                direction = next(
                    (kw.value for kw in call.keywords if kw.arg == "direction"), None
                )
                if direction is None and len(call.args) > 1:
                    direction = call.args[1]
                desc = (
                    direction is not None and "DESC" in ast.unparse(direction).upper()
                )
                query.orders.append((path, "DESCENDING" if desc else "ASCENDING"))
            else:
                self._filters(call, query)
        return query

    def _filters(self, call, query: Query) -> None:
        kw = {k.arg: k.value for k in call.keywords}
        if "filter" in kw:
            self._filter_node(kw["filter"], query)
        elif len(call.args) >= 2:
            query.filters.append((self.text(call.args[0]), self.text(call.args[1])))
        elif "field_path" in kw:
            query.filters.append(
                (self.text(kw["field_path"]), self.text(kw.get("op_string")))
            )
        else:
            query.unsupported.append(ast.unparse(call)[:80])

    def _filter_node(self, node, query: Query) -> None:
        name = ast.unparse(node.func) if isinstance(node, ast.Call) else ""
        if name.endswith("FieldFilter"):
            args = list(node.args) + [k.value for k in node.keywords]
            query.filters.append((self.text(args[0]), self.text(args[1])))
        elif name.endswith("And"):
            inner = node.args[0] if node.args else node.keywords[0].value
            for item in getattr(inner, "elts", []):
                self._filter_node(item, query)
        else:
            query.unsupported.append(f"filter {ast.unparse(node)[:80]}")


def _firestore_queries() -> list[Query]:
    scanner = _QueryScanner(_string_constants())
    return [q for path in _python_files(*DEPLOYED_CODE) for q in scanner.scan(path)]


def _needed_index(query: Query) -> tuple[set[str], list[tuple[str, str]]] | None:
    """(equality fields, ordered fields) of the composite index a query
    needs, or None when single-field indexes serve it."""
    equal = {f for f, op in query.filters if op in EQUALITY}
    ordered = list(query.orders)
    for f, op in query.filters:
        if op in RANGE and f not in [o[0] for o in ordered]:
            ordered.insert(0, (f, "ASCENDING"))  # Firestore orders by it first
    if not ordered:
        return None  # equality only: Firestore merges single-field indexes
    if not equal and len(ordered) == 1:
        return None
    return equal, ordered


def _serves(index: dict, collection: str, need) -> bool:
    equal, ordered = need
    fields = [(f["path"], f["order"]) for f in index["fields"]]
    head, tail = fields[: len(equal)], fields[len(equal) :]
    return (
        index["collection"] == collection
        and {f for f, _ in head} == equal
        and tail == ordered
    )


def test_the_query_scanner_finds_the_pool_queries():
    found = {
        (q.collection, tuple(f for f, _ in q.filters)) for q in _firestore_queries()
    }

    assert ("numbers", ("site_id", "kind", "overflow", "available_at")) in found
    assert ("numbers", ("site_id",)) in found


def test_every_firestore_query_has_its_index(tf):
    indexes = tf.locals["firestore_indexes"].values()
    ops = set(EQUALITY) | set(RANGE)
    problems = []
    for q in _firestore_queries():
        unknown = [f"{f} {op}" for f, op in q.filters if f is None or op not in ops]
        unknown += [f"order_by {f}" for f, _ in q.orders if f is None]
        if q.collection is None or unknown or q.unsupported:
            problems.append(
                f"{q.where}: cannot read collection {q.collection!r}, "
                f"{unknown + q.unsupported}; use string constants"
            )
            continue
        need = _needed_index(q)
        if need and not any(_serves(i, q.collection, need) for i in indexes):
            fields = sorted(need[0]) + [f"{f} {d}" for f, d in need[1]]
            problems.append(
                f"{q.where}: add to local.firestore_indexes in "
                f"infra/firestore.tf: {q.collection} ({', '.join(fields)})"
            )

    assert problems == []


def test_no_query_uses_a_ttl_field_whose_index_is_off(tf):
    ttl = set(tf.locals["ttl_collections"])
    field_name = tf.locals["ttl_field"]
    used = [
        q.where
        for q in _firestore_queries()
        if q.collection in ttl
        and field_name in {f for f, _ in q.filters} | {f for f, _ in q.orders}
    ]

    assert used == []


# -- Secrets and settings -----------------------------------------------------


@dataclass
class _Settings:
    constants: dict  # constant name -> env name
    fields: dict  # Settings field -> env name
    defaults: dict  # Settings field -> default text

    @property
    def secrets(self) -> set[str]:
        return {
            env
            for name, env in self.constants.items()
            if SECRETISH.search(name) or SECRETISH.search(env)
        }


def _settings() -> _Settings:
    tree = ast.parse(SETTINGS.read_text())
    constants = {
        n.targets[0].id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign)
        and len(n.targets) == 1
        and isinstance(n.targets[0], ast.Name)
        and isinstance(n.value, ast.Constant)
        and isinstance(n.value.value, str)
        and n.targets[0].id.isupper()
    }
    fields, defaults = {}, {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and ast.unparse(call.func) == "Settings":
            for kw in call.keywords:
                names = [
                    n.id
                    for n in ast.walk(kw.value)
                    if isinstance(n, ast.Name) and n.id in constants
                ]
                if names:
                    fields[kw.arg] = constants[names[0]]
                strings = [
                    n.value
                    for n in ast.walk(kw.value)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                ]
                if strings:
                    defaults[kw.arg] = strings[-1]
    return _Settings(constants, fields, defaults)


def test_the_settings_reader_finds_the_provider_secrets():
    conf = _settings()

    assert "CALLTRACK_PROVIDER_SECRETS" in conf.secrets
    assert conf.fields["provider_secrets"] == "CALLTRACK_PROVIDER_SECRETS"


def test_every_secret_setting_is_declared_and_nothing_else(tf):
    declared = set(tf.locals["secret_settings"])

    assert declared == _settings().secrets


def test_function_environment_names_exist_in_settings(tf):
    env = _norm(tf.locals["function_env"])
    names = set(re.findall(r"([A-Z][A-Z0-9_]+)=", env))

    assert names <= set(_settings().constants.values())
    assert 'CALLTRACK_BACKEND="gcp"' in env


# -- What each function may touch ---------------------------------------------


@dataclass
class _Needs:
    firestore: bool = False
    bigquery: bool = False
    bigquery_write: bool = False
    bigquery_query: bool = False
    secrets: set = field(default_factory=set)
    topics: set = field(default_factory=set)


def _needs(name: str, conf: _Settings) -> _Needs:
    needs = _Needs()
    secret_fields = {f: env for f, env in conf.fields.items() if env in conf.secrets}
    topic_fields = {f: d for f, d in conf.defaults.items() if f.startswith("topic_")}
    for path in _closure(ROOT / "functions" / name / "main.py"):
        if path in (SETTINGS, ROOT / "shared" / "clients.py"):
            continue
        tree = ast.parse(path.read_text())
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        needs.firestore |= "clients.firestore" in calls
        if "clients.bigquery" in calls:
            needs.bigquery = True
            needs.bigquery_write |= bool(
                attrs & {"insert_rows_json", "load_table_from_json", "insert_rows"}
            )
            needs.bigquery_query |= "query" in attrs
        needs.secrets |= {env for f, env in secret_fields.items() if f in attrs}
        needs.topics |= {topic for f, topic in topic_fields.items() if f in attrs}
    return needs


def test_the_access_reader_sees_what_assign_and_record_sessions_use():
    conf = _settings()

    assert _needs("assign", conf).firestore is True
    assert _needs("assign", conf).bigquery is False
    assert _needs("record_sessions", conf).bigquery_write is True
    assert _needs("record_sessions", conf).firestore is False


def test_each_function_holds_exactly_the_access_its_code_uses(tf):
    conf = _settings()
    access = tf.locals["function_access"]
    problems = []
    for name, spec in MANIFEST["functions"].items():
        need = _needs(name, conf)
        grant = access.get(name, {})
        secrets = set(grant.get("secrets", []))
        write = grant.get("bigquery_write", False)
        query = grant.get("bigquery_query", False)
        checks = [
            (need.firestore and not grant.get("firestore"), "needs firestore = true"),
            (
                grant.get("firestore") and not need.firestore,
                "has firestore it never uses",
            ),
            (need.bigquery_write and not write, "needs bigquery_write = true"),
            (need.bigquery_query and not query, "needs bigquery_query = true"),
            (need.bigquery and not (write or query), "needs a bigquery grant"),
            ((write or query) and not need.bigquery, "has bigquery it never uses"),
            (need.secrets - secrets, f"needs secrets {sorted(need.secrets - secrets)}"),
            (
                secrets - need.secrets,
                f"has secrets it never reads {sorted(secrets - need.secrets)}",
            ),
        ]
        problems += [f"{name} {msg}" for bad, msg in checks if bad]
        unpublished = need.topics - set(spec.get("publishes", []))
        if unpublished:
            problems.append(
                f"{name} publishes to {sorted(unpublished)}: add them to its "
                '"publishes" in functions/manifest.json'
            )

    assert problems == [], "Fix local.function_access in infra/iam.tf."
