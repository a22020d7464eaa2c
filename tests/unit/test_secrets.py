"""Secrets come from the environment or from files, never need the command line, and a
password given on the command line is warned about once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.asyncio.connection import Connection, SSLConnection

from streams.cli.main import build_parser, main, settings_from
from streams.connections import redis_client
from streams.settings import KafkaSecurity, Settings, secret_from_file
from streams.store.breaker import WORKER_TIMEOUT_S, worker_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("WATCHKEEPER_")]:
        monkeypatch.delenv(name)


# --- *_FILE ------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(
    secret=st.text(
        st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1
    ).filter(lambda s: not s.endswith("\r")),
    ending=st.sampled_from(["", "\n", "\r\n"]),
)
def test_a_secret_file_gives_its_text_without_the_trailing_newline(
    tmp_path: Path, secret: str, ending: str
) -> None:
    if ending == "" and secret.endswith("\n"):
        return  # that newline is the file's last one and goes, as it should
    path = tmp_path / "secret"
    path.write_bytes((secret + ending).encode())
    assert secret_from_file(path, "x").get_secret_value() == secret


def test_only_one_trailing_newline_goes(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("pw \n\n")
    assert secret_from_file(path, "x").get_secret_value() == "pw \n"


def test_redis_password_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "redis-password"
    path.write_text("hunter2\n")
    monkeypatch.setenv("WATCHKEEPER_REDIS_PASSWORD_FILE", str(path))
    s = Settings()
    assert s.redis_password is not None and s.redis_password.get_secret_value() == "hunter2"
    assert s.redis_password_file is None  # read once, at validation


def test_kafka_sasl_password_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kafka-password"
    path.write_text("s3cret\n")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_USERNAME", "watchkeeper")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_PASSWORD_FILE", str(path))
    kafka = Settings().kafka
    assert kafka.sasl_password is not None and kafka.sasl_password.get_secret_value() == "s3cret"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("", "is empty"), ("\n", "is empty"), (b"\xff\xfe", "cannot read")],
)
def test_a_bad_secret_file_is_a_clear_error(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "redis-password"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError, match=f"redis_password_file: .*{message}"):
        Settings(redis_password_file=path)


def test_a_secret_given_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("a")
    with pytest.raises(ValidationError, match="redis_password and redis_password_file"):
        Settings(redis_password="b", redis_password_file=path)
    with pytest.raises(ValidationError, match="sasl_password and sasl_password_file"):
        KafkaSecurity(
            security_protocol="SASL_SSL",
            sasl_username="u",
            sasl_password="b",
            sasl_password_file=path,
        )


def test_validation_errors_never_show_a_secret() -> None:
    """pydantic puts the input in its messages; a refused setting may be a password."""
    with pytest.raises(ValidationError) as kafka:
        KafkaSecurity(security_protocol="SSL", sasl_username="u", sasl_password="hunter2")
    with pytest.raises(ValidationError) as redis:
        Settings(redis_url="redis://:hunter2@h/0", redis_password="hunter2")
    for error in (kafka.value, redis.value):
        assert "hunter2" not in str(error) and "hunter2" not in repr(error)


# --- Redis settings and the clients built from them ------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"redis_url": "redis://:a@h/0", "redis_password": "b"}, "both in redis_url"),
        (
            {"redis_url": "redis://u:a@h/0", "redis_username": "v", "redis_password": "b"},
            "both in redis_url",
        ),  # fmt: skip
        ({"redis_username": "u"}, "redis_username needs redis_password"),
        ({"redis_ca_file": "/etc/hostname"}, "redis_url is redis://, which does not use TLS"),
        ({"redis_url": "rediss://h/0", "redis_ca_file": "/nonexistent.pem"}, "is not a file"),
    ],
)
def test_inconsistent_redis_settings_are_a_clear_error(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**options)  # type: ignore[arg-type]


def test_redis_clients_get_credentials_and_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")  # read by the connection, not here
    s = Settings(
        redis_url="rediss://redis.internal:6380/2",
        redis_username="watchkeeper",
        redis_password="hunter2",
        redis_ca_file=ca,
    )
    for client in (redis_client(s), worker_redis(s)):
        pool = client.connection_pool
        kw = pool.connection_kwargs
        assert pool.connection_class is SSLConnection
        assert (kw["host"], kw["port"], kw["db"]) == ("redis.internal", 6380, 2)
        assert (kw["username"], kw["password"]) == ("watchkeeper", "hunter2")
        assert kw["ssl_ca_certs"] == str(ca)
        assert kw.get("ssl_cert_reqs", "required") == "required"  # verified, as by default
    assert worker_redis(s).connection_pool.connection_kwargs["socket_timeout"] == WORKER_TIMEOUT_S


def test_a_password_in_the_url_still_works_and_nothing_is_added() -> None:
    client = worker_redis(Settings(redis_url="redis://:inurl@127.0.0.1:6379/0"))
    kw = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class is Connection
    assert kw["password"] == "inurl" and "ssl_ca_certs" not in kw


# --- the command line --------------------------------------------------------------------


def test_worker_help_shows_the_security_options(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["worker"], ["notify"], ["replay"], ["simulate"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        for option in (
            "--kafka-security-protocol",
            "--kafka-sasl-mechanism",
            "--kafka-sasl-username",
            "--kafka-sasl-password-file",
            "--kafka-ssl-cafile",
            "--kafka-ssl-certfile",
            "--kafka-ssl-keyfile",
        ):
            assert option in out, (command, option)
        if command[0] in ("worker", "notify"):
            for option in ("--redis-password-file", "--redis-username", "--redis-ca-file"):
                assert option in out, (command, option)
    with pytest.raises(SystemExit):
        main(["owners", "list", "--help"])
    assert "--redis-password-file" in capsys.readouterr().out


def test_options_override_the_environment_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "pw"
    password.write_text("from-file\n")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_USERNAME", "env-user")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    args = build_parser().parse_args(
        [
            "worker",
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-password-file",
            str(password),
            "--redis-password-file",
            str(password),
        ]
    )
    s = settings_from(args)
    assert (s.kafka.security_protocol, s.kafka.sasl_mechanism, s.kafka.sasl_username) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "env-user",
    )
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == "from-file"
    assert s.redis_password is not None and s.redis_password.get_secret_value() == "from-file"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--redis", "redis://:hunter2@127.0.0.1:1/0"], ["--redis URL with a password"]),
        (["--redis-password", "hunter2"], ["--redis-password"]),
        (
            [
                "--kafka-security-protocol",
                "SASL_SSL",
                "--kafka-sasl-username",
                "u",
                "--kafka-sasl-password",
                "hunter2",
                "--redis-password",
                "hunter2",
            ],
            ["--kafka-sasl-password", "--redis-password"],
        ),  # fmt: skip
    ],
)
def test_a_password_in_argv_is_warned_about_once(
    argv: list[str], named: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # the broker URL is refused before anything connects: the warning comes first
    assert main(["worker", "--broker", "no-scheme:9092", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1, err
    warning = next(line for line in err.splitlines() if "WARNING" in line)
    for option in named:
        assert option in warning
    assert "WATCHKEEPER_" in warning and "_FILE" in warning
    assert "hunter2" not in err


def test_secrets_from_the_environment_or_files_are_not_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = tmp_path / "pw"
    password.write_text("hunter2\n")
    monkeypatch.setenv("WATCHKEEPER_REDIS_PASSWORD", "hunter2")
    monkeypatch.setenv("WATCHKEEPER_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    main(["worker", "--broker", "no-scheme:9092", "--kafka-sasl-password-file", str(password)])
    assert "WARNING" not in capsys.readouterr().err


def test_the_installed_entry_point_warns_on_stderr() -> None:
    """The real command line, in its own process: what an operator sees."""
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "owners", "list",
         "--redis", "redis://:hunter2@127.0.0.1:1/0", "--redis-password-file", "/dev/null"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # a password in the URL and in a file: refused
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("watchkeeper: WARNING: a password on the command line")
    assert "WATCHKEEPER_REDIS_PASSWORD_FILE" in lines[0]
    assert sum("WARNING" in line for line in lines) == 1
    assert "hunter2" not in proc.stderr
