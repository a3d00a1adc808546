import json

from ipvlan_ip.front import cli


def test_validate_reports_each_problem_with_its_path(tmp_path, capsys):
    conf = tmp_path / "bad.conflist"
    conf.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "ipvlan-ip", "master": "eth0", "mode": "l4", "mtu": 10}, {"type": "tuning"}]}))
    assert cli.main(["validate", str(conf)]) == 1
    out = capsys.readouterr().out
    assert "$.plugins[0].mode: 'l4' is not one of" in out
    assert "$.plugins[0].mtu: 10 is not valid" in out


def test_validate_accepts_a_good_config(tmp_path, capsys):
    conf = tmp_path / "good.conf"
    conf.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "master": "eth0"}))
    assert cli.main(["validate", str(conf)]) == 0
    assert "valid" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    assert cli.main(["nonsense"]) == 2
    assert cli.main(["validate", "/nonexistent"]) == 2
