"""The records the predicting tools (tools/infer.py, deploy/triton/client.py) print and the exit
status they derive from them, shared by both."""
import json

from ppq2l.errors import ConfigError
from ppq2l.postprocess.records import print_records, run_records_cli

RECORDS = [{"file_name": "a.jpg", "class_ids": [1], "scores": [0.9], "label_names": ["cat"]},
           {"file_name": "b.jpg", "error": "cannot decode"}]


def test_records_are_json_lines_and_the_failed_inputs_one_line_on_stderr(capsys):
    print_records(RECORDS)
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == RECORDS
    assert err.splitlines() == ["1 of 2 files have no prediction (see their error records): b.jpg"]
    print_records(RECORDS[:1])
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and err == ""


def test_the_exit_status_follows_the_records(capsys):
    assert run_records_cli(lambda argv: RECORDS[:1], []) == 0
    assert run_records_cli(lambda argv: RECORDS, []) == 1

    def mistaken(argv):
        raise ConfigError("no such file")

    assert run_records_cli(mistaken, []) == 2
    assert capsys.readouterr().err == "error: no such file\n"
