"""The image commands' pure helpers: names split for display, sizes, ages, --change lines."""

from __future__ import annotations

import pytest

from composer.cli.image_cmds import ago, config_changes, human_size, split_name
from runtime.images.store import ImageError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("busybox:latest", ("busybox", "latest")),
        ("127.0.0.1:5000/tools/box:1", ("127.0.0.1:5000/tools/box", "1")),
        ("127.0.0.1:5000/tools/box", ("127.0.0.1:5000/tools/box", "<none>")),
        ("box@sha256:" + "a" * 64, ("box", "<none>")),
        (None, ("<none>", "<none>")),
    ],
)
def test_split_name(name, expected):
    assert split_name(name) == expected


def test_human_size_uses_decimal_units_like_docker():
    assert [human_size(n) for n in (0, 999, 1000, 1_039_175, 4_270_000_000)] == [
        "0B",
        "999B",
        "1kB",
        "1.04MB",
        "4.27GB",
    ]


def test_ago():
    from datetime import UTC, datetime, timedelta

    def stamp(delta: timedelta) -> str:
        return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert ago(stamp(timedelta(seconds=5))) == "Less than a minute ago"
    assert ago(stamp(timedelta(hours=3, minutes=1))) == "3 hours ago"
    assert ago(stamp(timedelta(days=1, hours=1))) == "1 day ago"
    assert ago(None) == "N/A" and ago("yesterday") == "yesterday"


def test_config_changes():
    config = config_changes(
        [
            'CMD ["echo", "hi"]',
            "entrypoint /init --quiet",
            "ENV A=1",
            "ENV A 2",
            "WORKDIR /srv",
            "USER 1000:1000",
            "EXPOSE 80 53/udp",
        ]
    )
    assert config == {
        "Cmd": ["echo", "hi"],
        "Entrypoint": ["/bin/sh", "-c", "/init --quiet"],
        "Env": ["A=2"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
    }
    with pytest.raises(ImageError, match="only CMD"):
        config_changes(["RUN true"])
    with pytest.raises(ImageError, match="bad JSON"):
        config_changes(["CMD [oops"])
