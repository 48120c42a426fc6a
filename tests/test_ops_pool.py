"""The operator CLI's site and pool commands, against the Firestore emulator."""

from __future__ import annotations

import json

from ops.__main__ import main
from tests.conftest import Client, numbers


def test_site_configure_numbers_import_and_pool_status(stack, tmp_path, capsys):
    site = tmp_path / "site.json"
    site.write_text(
        json.dumps(
            {
                "site_id": "cli",
                "default_number": "8 (495) 123-00-00",
                "allowed_origins": ["https://shop.example.test"],
                "cooldown_s": 600,
            }
        )
    )
    csv = tmp_path / "numbers.csv"
    csv.write_text(
        "number,kind,overflow,source,medium\n"
        + "".join(f"{n},dynamic,,,\n" for n in numbers(3))
        + "+74955550801,dynamic,true,,\n"
        + "8 495 555-09-00,static,,billboard,offline\n"
    )

    assert main(["site-configure", str(site)]) == 0
    assert main(["numbers-import", "--site", "cli", str(csv)]) == 0
    assert main(["numbers-import", "--site", "cli", str(csv)]) == 0
    Client(stack.urls["assign"]).call(
        "POST",
        "/?site=cli",
        {
            "visitor_id": "visitor-cli-1",
            "session_id": "session-cli-1",
            "last_touch": {"utm_source": "google", "utm_medium": "cpc"},
        },
    )
    capsys.readouterr()
    assert main(["pool-status", "--site", "cli", "--json"]) == 0

    status = json.loads(capsys.readouterr().out)
    assert status == {
        "site_id": "cli",
        "held": 1,
        "cooling": 0,
        "free": 2,
        "overflow": 1,
        "overflow_in_use": 0,
        "static": 1,
        "utilisation": 0.333,
    }


def test_numbers_import_reports_the_bad_line(stack, tmp_path, capsys):
    (tmp_path / "s.json").write_text(
        json.dumps(
            {"site_id": "cli", "default_number": "+74951230000", "allowed_origins": []}
        )
    )
    main(["site-configure", str(tmp_path / "s.json")])
    bad = tmp_path / "bad.csv"
    bad.write_text("number,kind\n+74955551000,dynamic\nnot-a-phone,dynamic\n")
    capsys.readouterr()

    assert main(["numbers-import", "--site", "cli", str(bad)]) == 2
    assert "Line 3: Expected a phone number" in capsys.readouterr().err


def test_site_configure_rejects_a_bad_policy(stack, tmp_path, capsys):
    (tmp_path / "s.json").write_text(
        json.dumps(
            {
                "site_id": "cli",
                "default_number": "+74951230000",
                "overflow_policy": "pray",
            }
        )
    )

    assert main(["site-configure", str(tmp_path / "s.json")]) == 2
    assert "overflow_policy" in capsys.readouterr().err
