"""Mutation testing of the code that guards the data: does each module's own fast test set notice a change?

    python bench/mutation.py [--module M] [--json] [--list-survivors]

A small AST mutator of our own (mutmut 3 copies the tree into ``mutants/`` and trampolines every function,
which fights our package-relative data files and fork-free test fixtures): each mutant changes one node —
a comparison (``<`` ↔ ``<=``, ``==`` ↔ ``!=``, ``is`` ↔ ``is not``, ``in`` ↔ ``not in``), an arithmetic or
bit operator (``+`` ↔ ``-``, ``//`` → ``/``, ``&`` ↔ ``|``, ``<<`` ↔ ``>>`` …), ``and`` ↔ ``or``, a dropped
``not``, an integer constant (n → n + 1), ``True`` ↔ ``False``, or an assignment's value (→ ``None``).
Strings (messages) are not mutated. Each mutant runs in a forked child (pytest already imported in the
parent) that loads the mutated module through an import hook, then runs that module's tests with ``-x``;
a mutant is killed when a test fails or errors, or when it runs past the timeout.

Mutants known to be equivalent (no input can tell them apart) are listed in ``EQUIVALENT`` with a reason
and left out of the kill rate; docs/benchmarks.md carries the same list.
"""

from __future__ import annotations

import argparse
import ast
import importlib.abc
import importlib.util
import io
import json
import os
import platform
import signal
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# module → its own fast tests
MODULES: dict[str, list[str]] = {
    "gateway.frames.counter": ["tests/frames/test_counter.py", "tests/frames/test_mutants_counter.py"],
    "gateway.frames.crypto": [
        "tests/frames/test_crypto.py",
        "tests/frames/test_vectors.py",
        "tests/frames/test_mutants_crypto.py",
    ],
    "gateway.frames.wire": [
        "tests/frames/test_wire.py",
        "tests/frames/test_vectors.py",
        "tests/frames/test_mutants_wire.py",
    ],
    "gateway.frames.decoder": [
        "tests/frames/test_decoder.py",
        "tests/frames/test_counter_reset.py",
        "tests/frames/test_counter.py",
        "tests/frames/test_vectors.py",
        "tests/frames/test_mutants_decoder.py",
    ],
    "gateway.sinks.outbox": [
        "tests/service/test_outbox.py",
        "tests/service/test_outbox_disk_full.py",
        "tests/service/test_outbox_mutants.py",
        "tests/service/test_outbox_history.py",
        "tests/history/test_migration.py",
    ],
    "gateway.radio.airtime": ["tests/radio/test_airtime.py", "tests/radio/test_airtime_mutants.py"],
}

_CMP_SWAP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BIN_SWAP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Div,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
    ast.Pow: ast.Mult,
}

_STATES = "TO_PUBLISH, WAITING_MODEL, PARKED, REQUEUED = 0, 1, 2, 3  # KEPT (-1): delivered, kept as history"
_HISTORY_HOOK = "self._history_written = False  # the transaction being written called the history's hook"
_EPISODE = "self._episode_dropped = 0  # frames dropped in this episode (set again when one begins)"
_RECOUNT = "if held != self.stats.parked - len(rows):  # dropped or expired elsewhere: count again"
_OLDEST = "first = oldest if first is None or (oldest is not None and oldest < first) else first"

# (module, source line stripped, mutation) → why no test can kill it (keyed by text: lines move)
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("crypto", "if n <= 16:", "LtE->Lt"): "at 16 bytes the many-block path builds the same single block A1",
    (
        "wire",
        "TYPE_MASK = 0x30",
        "value->None",
    ): "the constant is not read by any code (documentation of the bits)",
    ("wire", "TYPE_MASK = 0x30", "48->49"): "the constant is not read by any code",
    (
        "crypto",
        'b"".join(prefix + _TAIL.pack(fcnt, 0, i) for i in range(1, (n + 15) // 16 + 1))',
        "1->2",
    ): "one keystream block more than needed; stream[:n] cuts it off",
    (
        "crypto",
        'b"".join(prefix + _TAIL.pack(fcnt, 0, i) for i in range(1, (n + 15) // 16 + 1))',
        "15->16",
    ): "at most one block more than needed; stream[:n] cuts it off",
    ("wire", "CRC16_INIT = 0xFFFF", "value->None"): "not read by any code (documents the init value)",
    ("wire", "CRC16_INIT = 0xFFFF", "65535->65536"): "not read by any code",
    (
        "wire",
        "state = _PREFIX_STATES.get(fingerprint)",
        "value->None",
    ): "a cache miss every time: the same CRC state is computed again (speed only)",
    (
        "wire",
        "if len(_PREFIX_STATES) > 1024:  # models come and go rarely; never grow without bound",
        "Gt->GtE",
    ): "the cache is cleared one entry earlier: results identical (memory only)",
    (
        "wire",
        "if len(_PREFIX_STATES) > 1024:  # models come and go rarely; never grow without bound",
        "1024->1025",
    ): "the cache is cleared one entry later: results identical (memory only)",
    ("wire", "NODE_ID_LEN_MASK = 0x03  # node id length − 1", "value->None"): "not read by any code",
    ("wire", "NODE_ID_LEN_MASK = 0x03  # node id length − 1", "3->4"): "not read by any code",
    ("wire", "VERSION_SHIFT = 6", "6->7"): "FORMAT_VERSION is 0: 0 shifted by any amount is 0",
    ("wire", "(FORMAT_VERSION << VERSION_SHIFT)", "LShift->RShift"): "FORMAT_VERSION is 0: 0 >> 6 == 0 << 6",
    (
        "airtime",
        "return symbol_time_s(sf, bw_hz) > LDRO_SYMBOL_LIMIT_S",
        "Gt->GtE",
    ): "no SF 6–12 × bandwidth gives a symbol of exactly 16 ms (checked for all 70 pairs)",
    (
        "airtime",
        "num = 8 * payload_len - 4 * sf + 28 + 16 * int(crc) - 20 * int(implicit)",
        "20->21",
    ): "the numerator is always even and the denominator a multiple of 4: one less never crosses a ceiling"
    " step (checked for every SF, length, CRC, header, LDRO)",
    (
        "airtime",
        "return math.floor(round(3600.0 * duty_cycle / airtime_s, 9))",
        "9->10",
    ): "rounding to 9 or 10 decimals differs only within 1e-9 of an integer, which no time on air of the"
    " formula reaches (checked: every SF × bandwidth × 0–255 bytes × 0.1/1/10/100 %)",
    (
        "decoder",
        "ModelCandidates = Callable[[int, int], Sequence[tuple[int, bytes]]]",
        "value->None",
    ): "a type alias read only in annotations (strings under `from __future__ import annotations`)",
    (
        "decoder",
        'self._last_reload = float("-inf")',
        "value->None",
    ): "__init__ calls reload() on the next line, which sets it (or the constructor raises)",
    (
        "decoder",
        "if frame.next_fcnt > state.next:",
        "Gt->GtE",
    ): "when equal, the assignment stores the value already there",
    (
        "decoder",
        "if len(self._bare) > 1:",
        "Gt->GtE",
    ): "with exactly one bare node the branch before it always returns or raises",
    (
        "decoder",
        "if node_hint is None and data[:1] and data[0] >> 6 == 0:",
        "1->2",
    ): "data[:1] and data[:2] are both empty exactly when data is",
    ("outbox", _STATES, "1->2"): "WAITING_MODEL is not read by any code (the SQL spells the states)",
    ("outbox", _STATES, "3->4"): "REQUEUED is not read by any code (the SQL spells the states)",
    ("outbox", "if self._cap_pages is None and self._free_bytes() - self._floor >= need:", "GtE->Gt"): (
        "at equality the fallback room_bytes() (that free space plus free pages) is >= need too"
    ),
    (
        "outbox",
        "self._data_version = self._db_version()  # changes only when another connection commits",
        "value->None",
    ): "the first over-cap commit then recounts once (None never equals a version): the same count",
    ("outbox", "if self.stats.rows > self.settings.max_rows:", "Gt->GtE"): (
        "at exactly max_rows it may recount, and the second check (>) still decides: nothing dropped"
    ),
    ("outbox", "version = self._db_version()", "value->None"): (
        "every over-cap commit then recounts: the count is the database's either way (speed only)"
    ),
    ("outbox", "self._data_version = version", "value->None"): (
        "the next over-cap commit recounts again: the same count (speed only)"
    ),
    ("outbox", "return -1", "1->2"): (
        "any negative sentinel: SQLite's data_version is never negative, so -1 and -2 compare alike"
    ),
    ("outbox", "upto = top.fetchone()[0] or 0", "0->1"): (
        "max_rows runs only on a count that is the database's (recounted after another process wrote),"
        " so some row is still to deliver and max(id) is never NULL; with none, id <= 1 retires nothing"
        " either"
    ),
    ("outbox", "if version < SCHEMA_VERSION or not row:", "Lt->LtE"): (
        "rewrites the same ('outbox', SCHEMA_VERSION) row with INSERT OR REPLACE"
    ),
    ("outbox", "if version < SCHEMA_VERSION or not row:", "drop-not"): (
        "rewrites the same ('outbox', SCHEMA_VERSION) row with INSERT OR REPLACE"
    ),
    ("outbox", 'columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}', "1->2"): (
        "a file below v2 never has the v2 columns (added with the v2 row in one transaction)"
    ),
    ("outbox", "pages = max(1, int(self.settings.max_db_mb * 1024 * 1024) // PAGE_SIZE)", "1->2"): (
        "a cap of 1 or 2 pages: a new file cannot be created under either, an existing one (>= 4 pages)"
        " is capped at its size by SQLite"
    ),
    ("outbox", "self._closed = False", "value->None"): "None and False are both false for `if self._closed`",
    ("outbox", "self._has_nodes = self._nodes_table()", "value->None"): (
        "falsy: the first write with frames asks the database again before any use"
    ),
    ("outbox", _HISTORY_HOOK, "value->None"): (
        "_write sets it before its only reader (commit, after _write) runs"
    ),
    ("outbox", _HISTORY_HOOK, "False->True"): (
        "_write sets it before its only reader (commit, after _write) runs"
    ),
    ("outbox", "self._history_written = False", "value->None"): (
        "None and False are both false for its only reader (`… and self._history_written`)"
    ),
    ("outbox", _EPISODE, "value->None"): (
        "read only within a disk-full episode, and _enter_disk_full sets it to 0 as the episode begins"
    ),
    ("outbox", _EPISODE, "0->1"): (
        "read only within a disk-full episode, and _enter_disk_full sets it to 0 as the episode begins"
    ),
    ("outbox", "stop = False", "value->None"): (
        "None and False are both false: it is read only as `while not stop` and `stop or …`"
    ),
    ("outbox", "if version < 3:", "Lt->LtE"): (
        "on a v3 file the v3 statements change nothing (CREATE … IF NOT EXISTS, INSERT … WHERE NOT EXISTS)"
    ),
    ("outbox", "if version < 3:", "3->4"): (
        "on a v3 file the v3 statements change nothing (CREATE … IF NOT EXISTS, INSERT … WHERE NOT EXISTS)"
    ),
    ("outbox", "limit = len(acked) + 64", "64->65"): (
        "the size of W's scan batches only: the walk reads batch after batch until it stops, same W and marks"
    ),
    ("outbox", _RECOUNT, "Sub->Add"): (
        "a recount more after a round that took rows back: count() equals stats.rows, which this process"
        " keeps exact (another process only drops parked rows, which changes `held`: both recount)"
    ),
    ("outbox", _OLDEST, "Lt->LtE"): "at equality both are the same time",
}


def reclassify(module: dict) -> dict:
    """Move the survivors now listed in EQUIVALENT out of the kill rate (for a JSON written before)."""
    short = Path(module["module"]).stem
    keep = [s for s in module["survivors"] if (short, s["code"], s["mutation"]) not in EQUIVALENT]
    moved = len(module["survivors"]) - len(keep)
    judged = module["killed"] + len(keep)
    return {
        **module,
        "survivors": keep,
        "survived": len(keep),
        "equivalent": module["equivalent"] + moved,
        "kill_rate": round(module["killed"] / judged, 4) if judged else None,
    }


@dataclass(frozen=True)
class Mutant:
    index: int  # position of the node in ast.walk order
    line: int
    what: str


def _docstring_ids(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _skip_ids(tree: ast.AST) -> set[int]:
    """Nodes not mutated: docstrings, f-string parts, type annotations, logging calls, __slots__."""
    skip = _docstring_ids(tree)
    for node in ast.walk(tree):
        sub: list[ast.AST] = []
        if isinstance(node, ast.JoinedStr):
            sub = [node]
        elif isinstance(node, ast.arg | ast.AnnAssign) and getattr(node, "annotation", None) is not None:
            sub = [node.annotation]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            sub = [node.returns]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "log"
        ) or (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets)
        ):
            sub = [node]
        for s in sub:
            skip.update(id(n) for n in ast.walk(s))
    return skip


def _candidates(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP_SWAP:
        return [f"{type(node.ops[0]).__name__}->{_CMP_SWAP[type(node.ops[0])].__name__}"]
    if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _BIN_SWAP:
        return [f"{type(node.op).__name__}->{_BIN_SWAP[type(node.op)].__name__}"]
    if isinstance(node, ast.BoolOp):
        return ["and->or" if isinstance(node.op, ast.And) else "or->and"]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ["drop-not"]
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            return [f"{node.value}->{not node.value}"]
        if isinstance(node.value, int):
            return [f"{node.value}->{node.value + 1}"]
        if isinstance(node.value, float):
            return [f"{node.value}->{node.value + 1}"]
    if isinstance(node, ast.Assign) and not (
        isinstance(node.value, ast.Constant)
        and (node.value.value is None or isinstance(node.value.value, str))
    ):
        return ["value->None"]
    return []


def _apply(node: ast.AST, what: str) -> None:
    if isinstance(node, ast.Compare):
        node.ops = [_CMP_SWAP[type(node.ops[0])]()]
    elif isinstance(node, ast.BinOp | ast.AugAssign):
        node.op = _BIN_SWAP[type(node.op)]()
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.Constant):
        node.value = (not node.value) if isinstance(node.value, bool) else node.value + 1
    elif isinstance(node, ast.Assign):
        node.value = ast.copy_location(ast.Constant(None), node.value)


def mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    skip = _skip_ids(tree)
    found = []
    for i, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        # a dropped ``not`` is offered on the UnaryOp; an unary minus constant is left alone
        found.extend(Mutant(i, getattr(node, "lineno", 0), what) for what in _candidates(node))
    return found


def mutated_code(source: str, path: str, mutant: Mutant):
    tree = ast.parse(source)
    node = list(ast.walk(tree))[mutant.index]
    if mutant.what == "drop-not":
        # replace the UnaryOp by its operand in its parent
        for parent in ast.walk(tree):
            for field, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, field, node.operand)
                elif isinstance(value, list):
                    for j, item in enumerate(value):
                        if item is node:
                            value[j] = node.operand
    else:
        _apply(node, mutant.what)
    ast.fix_missing_locations(tree)
    return compile(tree, path, "exec")


class _Hook(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads one module from a code object instead of its file."""

    def __init__(self, name: str, code, origin: str) -> None:
        self.name, self.code, self.origin = name, code, origin

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        return importlib.util.spec_from_file_location(fullname, self.origin, loader=self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(self.code, module.__dict__)


def _run_tests(tests: list[str], timeout_s: float, hook: _Hook | None) -> str:
    """'killed', 'survived' or 'timeout' for one run in a forked child."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.chdir(ROOT)
            if hook is not None:
                sys.meta_path.insert(0, hook)
            signal.alarm(int(timeout_s) + 1)
            import pytest

            sink = io.StringIO()
            with redirect_stdout(sink), redirect_stderr(sink):
                code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests])
        finally:
            os._exit(int(code))
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "timeout" if os.WTERMSIG(status) == signal.SIGALRM else "killed"
    return "survived" if os.WEXITSTATUS(status) == 0 else "killed"


def run_module(
    name: str, tests: list[str], timeout_s: float, limit: int | None = None, show: bool = False
) -> dict:
    # the file, found without importing its package (a package __init__ would load the original)
    origin = str(ROOT / (name.replace(".", "/") + ".py"))
    source = Path(origin).read_text()
    tests = [t for t in tests if (ROOT / t).exists()]
    t0 = time.perf_counter()
    baseline = _run_tests(tests, timeout_s * 4, None)
    base_s = time.perf_counter() - t0
    if baseline != "survived":
        raise SystemExit(f"{name}: its tests fail without any mutant ({', '.join(tests)})")
    found = mutants(source)[:limit]
    rel = str(Path(origin).relative_to(ROOT))
    results = {"killed": 0, "survived": 0, "timeout": 0, "equivalent": 0}
    survivors = []
    short = name.rsplit(".", 1)[1]
    for m in found:
        line = source.splitlines()[m.line - 1].strip() if m.line else ""
        if (short, line, m.what) in EQUIVALENT:
            results["equivalent"] += 1
            continue
        verdict = _run_tests(
            tests, max(timeout_s, base_s * 3), _Hook(name, mutated_code(source, origin, m), origin)
        )
        results[verdict] += 1
        if verdict == "survived":
            survivors.append({"line": m.line, "mutation": m.what, "code": line})
            if show:  # as found: a module's run takes minutes
                print(f"[mutation] survivor {rel}:{m.line} {m.what}: {line}", file=sys.stderr, flush=True)
    judged = results["killed"] + results["timeout"] + results["survived"]
    return {
        "module": rel,
        "tests": tests,
        "generated": len(found),
        "killed": results["killed"] + results["timeout"],
        "survived": results["survived"],
        "equivalent": results["equivalent"],
        "kill_rate": round((results["killed"] + results["timeout"]) / judged, 4) if judged else None,
        "survivors": survivors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", help="a module (e.g. crypto or gateway.frames.crypto)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds a mutant's test run may take")
    ap.add_argument("--limit", type=int, help="first N mutants of each module only")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--list-survivors",
        action="store_true",
        help="print each surviving mutant on stderr as soon as it is found (the output always lists them)",
    )
    args = ap.parse_args(argv)
    chosen = list(MODULES)
    if args.module:
        chosen = [m for m in MODULES if any(m == a or m.endswith("." + a) for a in args.module)]
        if not chosen:
            print(
                f"error: no such module: {', '.join(args.module)} (one of {', '.join(MODULES)})",
                file=sys.stderr,
            )
            return 2
    # warm the parent so each forked child only imports the project
    import cryptography.hazmat.primitives.cmac  # noqa: F401
    import pytest  # noqa: F401

    assert not [m for m in sys.modules if m.split(".")[0] == "gateway"], "the parent must not import gateway"
    t0 = time.perf_counter()
    report = []
    for m in chosen:  # one line per module on stderr as it completes (a full run takes a while)
        report.append(run_module(m, MODULES[m], args.timeout, args.limit, args.list_survivors))
        r = report[-1]
        print(
            f"[mutation] {r['module']}: killed {r['killed']}/{r['killed'] + r['survived']}", file=sys.stderr
        )
    out = {
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "seconds": round(time.perf_counter() - t0, 1),
        "modules": report,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for r in report:
            print(
                f"{r['module']}: generated {r['generated']}, killed {r['killed']}, survived {r['survived']}, "
                f"equivalent {r['equivalent']}, kill rate {r['kill_rate']}"
            )
            for s in r["survivors"]:
                print(f"    line {s['line']}: {s['mutation']}: {s['code']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
