"""Import layering of src/bastion, read with ``ast`` (nothing is imported or executed).

Two rules from DESIGN.md ("api → services → store/crypto/ml; client and cli never import server
modules") and issue 10:

(a) ``bastion.client`` imports only itself and the modules it legitimately shares with the server
    (``CLIENT_MAY_IMPORT``): the wire contract, errors, crypto, the federation protocol pieces a
    site runs (envelopes, tensors, signed global models, SecAgg+ math, DP clip/noise, site data) and
    the pure compute libraries (``bastion.ml``, ``bastion.data`` and the model-side modules of
    ``bastion.llm``). Those shared modules must themselves stay inside the shared set (checked
    transitively), so a shared module that starts importing the store breaks the test too.
(b) only ``bastion.api``, ``bastion.web`` and ``bastion.cli`` import ``bastion.api``.
(c) the site runtime's two participants (``bastion.client.site.plain`` and ``.secure``) reach
    neither each other nor the runtime that picks between them, even through package ``__init__``
    files (importing a module runs its parents' ``__init__`` first).

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``. Accepted
violations would be listed in ``KNOWN_VIOLATIONS`` (none today, see docs/architecture.md); the
test fails on any violation not in it, and on any entry that no longer occurs, so the list stays
true.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Prefixes (a module or a package and everything under it) that bastion.client may import.
CLIENT_MAY_IMPORT: frozenset[str] = frozenset(
    {
        "bastion.client",
        "bastion.contract",  # request/response models shared by routes and SDK
        "bastion.errors",  # the error hierarchy the SDK maps problem+json onto
        "bastion.clock",  # the injectable wall clock (stdlib only): timestamps in keyring and de-id
        "bastion.crypto",  # AEAD, sealed files, Ed25519 signing; imports nothing of ours but errors
        "bastion.federation.envelope",  # sealing + signing a site update
        "bastion.federation.tensors",  # the tensor wire format inside envelopes and global models
        "bastion.federation.global_model",  # verifying the coordinator-signed global model
        "bastion.federation.replay",  # nonce cache used by envelope.open (in-memory, no store)
        "bastion.federation.secagg",  # SecAgg+ protocol math (client and server halves, no I/O)
        "bastion.privacy",  # DP clipping, noise, accountants, settings (pure math + pydantic)
        "bastion.federation.sitedata",  # loading a site's local data
        "bastion.federation.features",  # the feature spec a site's data is checked against
        "bastion.ml",  # model types, trainers, serialization: pure compute
        "bastion.data",  # loaders and de-identification: pure compute
        "bastion.llm.lora",  # LoRA training on a site (client/site/lora.py)
        "bastion.llm.modeldir",  # reading a local base-model directory
        "bastion.llm.textdata",  # parsing + scrubbing JSONL training text
    }
)

API_IMPORTERS: frozenset[str] = frozenset({"bastion.api", "bastion.web", "bastion.cli"})

# (rule, "path:line", importer, imported). Empty since the federation simulator moved to
# tests/federation/simulate.py; do not add to this set to make a new violation pass: fix the import.
KNOWN_VIOLATIONS: frozenset[tuple[str, str, str, str]] = frozenset()


def _module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = SRC) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, names imported from it) for every import, relative ones resolved."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                target = prefix if node.module is None else f"{prefix}.{node.module}"
            elif node.module is not None:
                target = node.module
            else:
                continue
            yield node.lineno, target, [a.name for a in node.names]


def _graph() -> list[tuple[str, str, str]]:
    """(importer, "path:line", imported module) for each import of a bastion module.

    ``from bastion.x import y`` names ``bastion.x.y`` when that is a module, else ``bastion.x``.
    """
    files = sorted((SRC / "bastion").rglob("*.py"))
    modules = {_module_name(f) for f in files}
    edges: list[tuple[str, str, str]] = []
    for f in files:
        importer = _module_name(f)
        where = f"{f.relative_to(SRC).as_posix()}"
        for line, target, names in _imports(f):
            if target != "bastion" and not target.startswith("bastion."):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for t in subs or [target]:
                edges.append((importer, f"{where}:{line}", t))
    return edges


def _under(module: str, prefixes: frozenset[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations() -> set[tuple[str, str, str, str]]:
    client = frozenset({"bastion.client"})
    found: set[tuple[str, str, str, str]] = set()
    for importer, where, target in _graph():
        if _under(importer, client) and not _under(target, CLIENT_MAY_IMPORT):
            found.add(("client-imports-server", where, importer, target))
        # The shared modules the client reaches must not themselves reach server code.
        if _under(importer, CLIENT_MAY_IMPORT - client) and not _under(target, CLIENT_MAY_IMPORT):
            found.add(("shared-imports-server", where, importer, target))
        if _under(target, frozenset({"bastion.api"})) and not _under(importer, API_IMPORTERS):
            found.add(("server-imports-api", where, importer, target))
    return found


def _show(rows: AbstractSet[tuple[str, str, str, str]]) -> str:
    return "\n".join(f"  {rule}: src/{where} {imp} imports {tgt}" for rule, where, imp, tgt in sorted(rows))


def test_layering_has_no_new_violations() -> None:
    new = _violations() - KNOWN_VIOLATIONS
    assert not new, "import layering broken (see docs/architecture.md):\n" + _show(new)


def test_known_violations_still_exist() -> None:
    gone = KNOWN_VIOLATIONS - _violations()
    assert not gone, "these violations were fixed: remove them from KNOWN_VIOLATIONS:\n" + _show(gone)


def test_checker_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    """The walker resolves relative imports and finds imports inside functions (so it can fail)."""
    pkg = tmp_path / "bastion" / "client"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from ..store import db\n    import bastion.api.app\n")
    assert list(_imports(f, tmp_path)) == [(2, "bastion.store", ["db"]), (3, "bastion.api.app", [])]


def test_wiring_lives_below_the_api() -> None:
    """Server code gets its services from ``bastion.wiring``, which imports nothing of the HTTP layer;
    nothing imports a wiring list from ``bastion.api`` (``cli/server.py`` used to)."""
    for importer, where, target in _graph():
        if importer == "bastion.wiring":
            assert not _under(target, frozenset({"bastion.api", "bastion.web"})), where
    for f in sorted((SRC / "bastion").rglob("*.py")):
        for line, target, names in _imports(f):
            if _under(target, frozenset({"bastion.api"})):
                assert "CONTEXT_HOOKS" not in names, f"{f.relative_to(SRC)}:{line}"


PARTICIPANTS = ("bastion.client.site.plain", "bastion.client.site.secure")
RUNTIME = "bastion.client.site.runtime"


def _reach(start: str, edges: list[tuple[str, str, str]]) -> dict[str, str]:
    """Every bastion module importing ``start`` loads (module -> "path:line" of the first import
    found), counting the parent packages' ``__init__`` that Python runs before a submodule."""
    follow: dict[str, list[tuple[str, str]]] = {}
    for importer, where, target in edges:
        follow.setdefault(importer, []).append((target, where))
    seen: dict[str, str] = {}
    todo = [(start, "start")]
    while todo:
        module, where = todo.pop()
        parents = [module.rsplit(".", n)[0] for n in range(1, module.count(".") + 1)]
        for m in [module, *parents]:
            if m in seen:
                continue
            seen[m] = where
            todo.extend(follow.get(m, []))
    return seen


def test_site_participants_reach_neither_each_other_nor_the_runtime() -> None:
    edges = _graph()
    for participant in PARTICIPANTS:
        reached = _reach(participant, edges)
        for forbidden in (*PARTICIPANTS, RUNTIME, "bastion.client.fl"):
            if forbidden != participant:
                assert forbidden not in reached, (
                    f"{participant} reaches {forbidden} (via src/{reached[forbidden]})"
                )
    # the runtime is what picks between them
    assert set(PARTICIPANTS) <= set(_reach(RUNTIME, edges))


def test_reach_follows_imports_and_parent_packages() -> None:
    """The walker sees an import chain and a parent ``__init__``'s imports (so the test above can fail)."""
    edges = [
        ("bastion.x.a", "bastion/x/a.py:1", "bastion.x.b"),
        ("bastion.x.b", "bastion/x/b.py:2", "bastion.y.c"),
        ("bastion.y", "bastion/y/__init__.py:3", "bastion.z"),
    ]
    reached = _reach("bastion.x.a", edges)
    assert {"bastion.x.b", "bastion.y.c", "bastion.y", "bastion.z", "bastion.x", "bastion"} <= set(reached)
    assert reached["bastion.z"] == "bastion/y/__init__.py:3"
