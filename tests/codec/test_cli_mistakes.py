"""Model CLI mistakes (issue 13): outputs that would destroy an input, missing directories, help texts."""

from __future__ import annotations

import argparse
import json
import shutil
from importlib import resources

import pytest

from gateway.cli.main import build_parser, main
from gateway.codec import DEMO_MODEL

from .conftest import DATA

CSV = DATA / "weather-400.csv"
SCHEMA = DATA / "weather.toml"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / DEMO_MODEL
    path.write_bytes(resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes())
    return path


def _train(out, data, *extra):
    return (
        "model",
        "train",
        "--data",
        data,
        "--schema",
        SCHEMA,
        "--samples-per-frame",
        "16",
        "--out",
        out,
        *extra,
    )


def test_train_refuses_to_overwrite_its_training_csv(capsys, tmp_path):
    data = tmp_path / "data.csv"
    shutil.copy(CSV, data)
    before = data.read_bytes()
    for extra in ((), ("--force",)):  # --force allows an odd name, never an input
        code, _, err = run(capsys, *_train(data, data, *extra))
        assert code == 2 and "is the input file of --data; refusing to overwrite it" in err
    assert data.read_bytes() == before


def test_train_output_name_must_end_in_npz_unless_forced(capsys, tmp_path):
    out = tmp_path / "model.csv"
    code, _, err = run(capsys, *_train(out, CSV))
    assert code == 2 and "does not end in .npz; use --force" in err and not out.exists()
    code, stdout, err = run(capsys, *_train(out, CSV, "--force"))
    assert code == 0, err
    assert out.read_bytes()[:2] == b"PK" and "model 0@1" in stdout


@pytest.mark.parametrize("command", ["train", "encode", "decode"])
def test_missing_output_directory_is_one_line_before_any_work(capsys, weights, tmp_path, command):
    out = "/nonexistent/a.npz"
    argv = {
        "train": _train(out, CSV),
        "encode": ("model", "encode", "--model", weights, "--data", CSV, "--out", out),
        "decode": ("model", "decode", "--model", weights, "--frames", CSV, "--out", out),
    }[command]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err == "lora-gw: cannot write /nonexistent/a.npz: directory /nonexistent does not exist\n"


def test_weight_writer_reports_a_missing_directory_as_one_line(model):
    from gateway.codec.errors import WeightsError
    from gateway.codec.weights import save

    with pytest.raises(WeightsError, match=r"cannot write /nonexistent/a\.npz: No such file"):
        save(model, "/nonexistent/a.npz")


def test_encode_and_decode_refuse_to_overwrite_their_inputs(capsys, weights, tmp_path):
    data = tmp_path / "d.csv"
    shutil.copy(CSV, data)
    code, _, err = run(capsys, "model", "encode", "--model", weights, "--data", data, "--out", data)
    assert code == 2 and "input file of --data" in err
    code, _, err = run(capsys, "model", "encode", "--model", weights, "--data", data, "--out", weights)
    assert code == 2 and "input file of --model" in err
    frames = tmp_path / "f.frames"
    assert run(capsys, "model", "encode", "--model", weights, "--data", data, "--out", frames)[0] == 0
    before = frames.read_bytes()
    code, _, err = run(capsys, "model", "decode", "--model", weights, "--frames", frames, "--out", frames)
    assert code == 2 and "input file of --frames" in err
    assert frames.read_bytes() == before and data.read_bytes() == CSV.read_bytes()


def test_csv_range_and_grid_options_on_the_command_line(capsys, weights, tmp_path):
    src = tmp_path / "odd.csv"
    src.write_text(
        "temperature,humidity,pressure,wind_speed,irradiance\n61.0,50,990,2.55,0\n20.0,50,990,2.5,0\n"
    )
    code, _, err = run(capsys, "model", "eval", "--model", weights, "--data", src)
    assert code == 2 and "wind_speed: 2.55 is not a multiple of the step 0.1" in err
    code, _, err = run(capsys, "model", "eval", "--model", weights, "--data", src, "--round")
    assert code == 2 and "temperature: 61.0 is outside the schema's range -40..60" in err
    code, out, err = run(
        capsys, "model", "eval", "--model", weights, "--data", src, "--round", "--clip", "--json"
    )
    assert code == 0 and json.loads(out)["samples"] == 2
    assert "clipped 1 value(s)" in err and "rounded 1 value(s)" in err


def _model_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    model = top.choices["model"]
    sub = next(a for a in model._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


MINE = ["train", "eval", "encode", "decode", "install", "list", "verify", "activate", "rollback", "remove"]


@pytest.mark.parametrize("name", MINE)
def test_every_option_has_help_with_its_default_and_examples_end_the_help(name):
    p = _model_parsers()[name]
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"model {name} {action.dest}: no help text"
        if action.option_strings and not action.required:
            assert "default" in action.help, f"model {name} {action.option_strings[0]}: help names no default"
    assert p.epilog.startswith("examples:\n  lora-gw model " + name)
    assert p.format_help().rstrip().endswith(p.epilog.rstrip()), "--help must end with the examples"
    assert p.formatter_class is argparse.RawDescriptionHelpFormatter


def test_encode_help_documents_the_frames_format():
    text = _model_parsers()["encode"].format_help()
    assert (
        '"format": "lora-gw-frames/1"' in text and '"payload": "<hex>"' in text and 'empty payload ""' in text
    )
