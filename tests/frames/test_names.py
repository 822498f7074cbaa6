"""Node names: validated when added, a collision-free fallback for legacy ones, escaped for display, and
no second bare node that would make both undecodable."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from gateway.frames import FrameDecoder, FrameEncoder, Node, NodeFormat, NodeRegistry, RegistryError
from gateway.frames.registry import (
    NAME_RULE,
    fallback_name,
    name_problem,
    shown,
    topic_name,
    warn_unusable_names,
)


@pytest.mark.parametrize(
    "name",
    ["tab\there", "new\nline", "nul\0", "ffff\uffff", "x" * 70_000, "x" * 65, "a/b+c#d", "a b", "café", ""],
)
def test_unsafe_names_are_refused_in_one_line_naming_the_rule(registry: NodeRegistry, name: str) -> None:
    with pytest.raises(RegistryError) as err:
        registry.add(Node(1, name))
    message = err.value.message
    assert NAME_RULE in message and "\n" not in message and len(message) < 300
    assert message.isascii() and message.isprintable()
    assert registry.nodes() == []


@pytest.mark.parametrize("name", ["weather", "a_b_c_d", "Node-7.b", "x" * 64, "0x2a-garden"])
def test_safe_names_are_accepted(registry: NodeRegistry, name: str) -> None:
    assert registry.add(Node(1, name)).name == name


def test_fallback_topics_never_collide_with_valid_names(registry: NodeRegistry) -> None:
    assert topic_name(1, "a/b+c#d") != topic_name(2, "a_b_c_d") == "a_b_c_d"
    assert topic_name(0x2A, "tab\there") == fallback_name(0x2A) == "id-0000002a"
    assert topic_name(0x2A, None) == "id-0000002a"  # a node removed while its frames wait
    # the reserved form is refused as a name, so no node can take another's fallback topic
    assert name_problem("id-0000002a") is not None and name_problem("id-garden") is None
    with pytest.raises(RegistryError, match="reserved"):
        registry.add(Node(7, "id-0000002a"))
    # a legacy name that happens to be in the reserved form falls back to its own id
    assert topic_name(7, "id-0000002a") == "id-00000007"


def test_legacy_names_are_read_reported_once_each_and_renamed(registry: NodeRegistry, caplog) -> None:
    for nid in (1, 2, 3):
        registry.add(Node(nid, f"n{nid}"))
    with sqlite3.connect(registry.path) as c:
        c.execute("UPDATE nodes SET name = ? WHERE node_id = 1", ("line\nbreak",))
        c.execute("UPDATE nodes SET name = CAST(x'ff41' AS TEXT) WHERE node_id = 2")  # not UTF-8
    nodes = registry.nodes()  # raised "Could not decode to UTF-8 column 'name'" before
    assert [n.name for n in nodes] == ["line\nbreak", "\udcffA", "n3"]
    with caplog.at_level(logging.WARNING, logger="gateway.frames.registry"):
        assert warn_unusable_names(nodes) == 2
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2 and all("\n" not in m and m.isascii() for m in lines)
    assert "00000001" in lines[0] and "line\\nbreak" in lines[0] and "id-00000001" in lines[0]
    assert "\\udcffA" in lines[1] and "nodes rename 2" in lines[1]
    assert registry.find("\udcffA").node_id == 2  # found by its stored name, as the CLI passes it
    assert registry.rename(2, "fixed").name == "fixed"
    with pytest.raises(RegistryError, match="refused"):
        registry.rename(1, "still\nbad")
    with pytest.raises(RegistryError, match="already registered"):
        registry.rename(1, "n3")


def test_shown_escapes_everything_a_terminal_could_misread() -> None:
    assert shown("weather") == "weather"
    assert shown("a\tb\x1b[0m\\") == "a\\tb\\x1b[0m\\\\"
    assert shown("\uffff\udcff") == "\\uffff\\udcff"
    long = shown("x" * 70_000)
    assert len(long) < 120 and long.endswith("(70000 characters)")


def test_a_second_bare_node_is_refused_with_the_reason(registry: NodeRegistry) -> None:
    registry.add(Node(80, "bare-lpp", format=NodeFormat.LPP))
    for fmt in (NodeFormat.LPP, NodeFormat.RAW):
        with pytest.raises(RegistryError, match="cannot name its sender") as err:
            registry.add(Node(81, "second", format=fmt))
        assert "80 (bare-lpp)" in err.value.message and "--radiohead-address" in err.value.message
    # attributes the decoder really uses tell the others apart
    registry.add(Node(82, "rh", format=NodeFormat.RADIOHEAD, radiohead_address=5))
    registry.add(Node(83, "framed"))
    decoder = FrameDecoder(registry)
    assert decoder.decode(bytes([0x01, 0x67, 0x00, 0xD7])).node_id == 80  # still attributable
    assert decoder.decode(FrameEncoder(83).encode_lpp([(1, "temperature", 1.0)])).node_id == 83
    registry.remove(80)
    assert registry.add(Node(81, "second", format=NodeFormat.RAW)).node_id == 81  # the only one now
