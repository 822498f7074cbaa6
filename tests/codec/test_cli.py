import json

import pytest

from gateway.cli.main import main

from .conftest import DATA

CSV = str(DATA / "weather-400.csv")
SCHEMA = str(DATA / "weather.toml")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "w.npz"
    code = main(
        [
            "model",
            "train",
            "--data",
            CSV,
            "--schema",
            SCHEMA,
            "--samples-per-frame",
            "16",
            "--out",
            str(path),
            "--model-id",
            "4",
            "--version",
            "3",
        ]
    )
    assert code == 0
    return path


def test_train_reports_progress_on_stderr(tmp_path, capsys):
    out_path = tmp_path / "m.npz"
    code, out, err = run(
        capsys,
        "model",
        "train",
        "--data",
        CSV,
        "--schema",
        SCHEMA,
        "--samples-per-frame",
        "8",
        "--out",
        str(out_path),
    )
    assert code == 0
    assert "fitting the predictor" in err
    assert "model 0@1" in out and out_path.stat().st_size <= 4096


def test_eval_json(trained, capsys):
    code, out, _ = run(capsys, "model", "eval", "--model", str(trained), "--data", CSV, "--json")
    assert code == 0
    res = json.loads(out)
    assert res["lossless"] is True
    assert res["lpp_bytes_per_sample"] == 19.0
    assert res["bytes_per_sample"] < res["sprintz_bytes_per_sample"] < res["lpp_bytes_per_sample"]


def test_encode_decode_round_trip_at_schema_resolution(trained, tmp_path, capsys):
    frames, back = tmp_path / "f.hex", tmp_path / "back.csv"
    assert (
        run(capsys, "model", "encode", "--model", str(trained), "--data", CSV, "--out", str(frames))[0] == 0
    )
    head, *lines = [json.loads(x) for x in frames.read_text().splitlines()]
    assert (head["frames"], head["samples"], head["model"]) == (25, 400, "4@3")
    assert len(lines) == 25 and all(x["samples"] == 16 and bytes.fromhex(x["payload"]) for x in lines)
    assert (
        run(capsys, "model", "decode", "--model", str(trained), "--frames", str(frames), "--out", str(back))[
            0
        ]
        == 0
    )
    assert back.read_text() == (DATA / "weather-400.csv").read_text()  # the test data has CRLF endings
    assert b"\r" not in back.read_bytes()


def test_generate_writes_a_csv_the_schema_reads(trained, tmp_path, capsys):
    out = tmp_path / "gen.csv"
    assert (
        run(
            capsys,
            "model",
            "generate",
            "--model",
            str(trained),
            "--samples",
            "50",
            "--seed",
            "1",
            "--out",
            str(out),
        )[0]
        == 0
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "temperature,humidity,pressure,wind_speed,irradiance" and len(lines) == 51


def test_store_commands(trained, tmp_path, capsys):
    state = str(tmp_path / "state")
    code, out, _ = run(capsys, "--state-dir", state, "model", "install", str(trained))
    assert code == 0 and "4@3" in out
    code, out, _ = run(capsys, "--state-dir", state, "model", "list", "--json")
    (row,) = json.loads(out)
    assert (row["model_id"], row["version"], row["active"]) == (4, 3, True)
    assert run(capsys, "--state-dir", state, "model", "verify")[0] == 0
    assert run(capsys, "--state-dir", state, "model", "verify", str(trained))[0] == 0
    assert run(capsys, "--state-dir", state, "model", "activate", "4@3")[0] == 0
    code, _, err = run(capsys, "--state-dir", state, "model", "rollback", "4")
    assert code == 2 and "no backup" in err
    code, _, err = run(capsys, "--state-dir", state, "model", "activate", "4@7")
    assert code == 2 and "not installed" in err
    assert run(capsys, "--state-dir", state, "model", "remove", "4@3")[0] == 0
    code, out, _ = run(capsys, "--state-dir", state, "model", "list")
    assert "no models installed" in out


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("temperature,humidity\n1,2\n")
    code, _, err = run(
        capsys,
        "model",
        "train",
        "--data",
        str(bad),
        "--schema",
        SCHEMA,
        "--samples-per-frame",
        "16",
        "--out",
        str(tmp_path / "x.npz"),
    )
    assert code == 2
    assert (
        err.strip().startswith("lora-gw: ") and "lacks channel" in err and len(err.strip().splitlines()) == 1
    )
    code, _, err = run(capsys, "model", "eval", "--model", str(bad), "--data", CSV)
    assert code == 2 and "not a codec weight file" in err
