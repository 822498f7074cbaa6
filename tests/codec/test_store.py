import numpy as np
import pytest

from gateway.codec import Model, ModelStore, save_weights, train
from gateway.codec.errors import StoreError
from gateway.codec.store import parse_ref


@pytest.fixture(scope="module")
def trained(schema, series) -> Model:
    return train(series, schema, 8, buckets=2, model_id=5, version=1)


@pytest.fixture
def files(tmp_path, trained):
    """Versions 1, 2 and 9 of model 5 (the version is a label: training does not depend on it)."""
    out = {}
    for version in (1, 2, 9):
        m = Model(trained.schema, trained.params, 8, 5, version, dict(trained.meta))
        out[version] = tmp_path / f"m5v{version}.npz"
        save_weights(m, out[version])
    return out


def test_install_activate_rollback_remove(tmp_path, files):
    store = ModelStore(tmp_path / "state")
    assert store.installed() == []
    assert store.resolve(5, 1) is None  # not installed: the caller keeps the frame raw
    store.install(files[1])
    store.install(files[2])
    rows = {(i.model_id, i.version): i for i in store.installed()}
    assert rows[(5, 2)].active and rows[(5, 1)].backup
    assert store.active(5).version == 2
    assert store.rollback(5) == 1
    assert store.active(5).version == 1
    assert store.rollback(5) == 2  # rolling back again returns to the newer version
    assert store.activate(5, 1) == 1
    assert store.remove(5, 1) == [1]
    assert store.active(5).version == 2
    assert store.remove(5) == [2]
    assert store.installed() == []
    with pytest.raises(StoreError):
        store.remove(5)


def test_resolve_uses_version_mod_8_preferring_the_active_one(tmp_path, files, series):
    store = ModelStore(tmp_path / "state")
    for v in (1, 2, 9):
        store.install(files[v])
    assert store.resolve(5, 1).version == 9  # newest match, 9 % 8 == 1
    store.activate(5, 1)
    assert store.resolve(5, 1).version == 1  # the active version wins among matches
    assert store.resolve(5, 2).version == 2
    assert store.resolve(5, 3) is None
    assert store.resolve(4, 1) is None
    m = store.resolve(5, 2)
    assert np.array_equal(m.decode(m.encode(series[:8])), series[:8])


def test_install_is_idempotent_but_versions_are_immutable(tmp_path, files, schema, series):
    store = ModelStore(tmp_path / "state")
    store.install(files[1])
    store.install(files[1])
    other = train(series[::-1].copy(), schema, 8, buckets=2, model_id=5, version=1)
    path = tmp_path / "other.npz"
    save_weights(other, path)
    with pytest.raises(StoreError, match="already installed"):
        store.install(path)


def test_corrupt_installed_file_is_reported_and_not_used(tmp_path, files):
    store = ModelStore(tmp_path / "state")
    store.install(files[2])
    path = store.path(5, 2)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    ((item, err),) = store.verify()
    assert item.version == 2 and err is not None
    assert store.resolve(5, 2) is None


def test_a_bad_file_is_not_installed(tmp_path):
    store = ModelStore(tmp_path / "state")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    with pytest.raises(Exception, match="not a codec weight file"):
        store.install(bad)
    assert list(store.root.glob("*.npz")) == []


@pytest.mark.parametrize(("text", "ref"), [("3", (3, None)), ("3@12", (3, 12)), (" 0 @ 1 ", (0, 1))])
def test_parse_ref(text, ref):
    assert parse_ref(text) == ref


@pytest.mark.parametrize("text", ["", "x", "16", "3@", "3@x"])
def test_parse_ref_rejects(text):
    with pytest.raises(StoreError):
        parse_ref(text)
