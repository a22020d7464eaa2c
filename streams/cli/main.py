"""The ``watchkeeper`` command: a thin layer that parses flags, builds settings, and turns
any WatchkeeperError into a message and exit code 2."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

from pydantic import ValidationError

from streams.cli.alerts import add_alerts_command, run_alerts
from streams.cli.notify import add_notify_commands, run_notify_command
from streams.cli.owners import add_owner_commands, run_owners
from streams.cli.replay import add_replay_command, run_replay
from streams.cli.report import add_report_command, run_report
from streams.cli.security import (
    REDIS_FLAG_FIELDS,
    add_kafka_flags,
    add_redis_flags,
    kafka_from,
    warn_about_secrets_in_argv,
)
from streams.cli.status import add_status_command, run_status
from streams.cli.ui import add_ui_command, port_number, run_ui
from streams.errors import ConfigError, WatchkeeperError
from streams.settings import Settings

__all__ = ["build_parser", "main", "settings_from"]

DESCRIPTION = (
    "Watchkeeper joins deployed models' predictions with their labels, watches them with "
    "drift detectors and label-free signals, and pages each model's owner."
)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (counts cannot be zero or less)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _version() -> str:
    try:
        return importlib.metadata.version("watchkeeper")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _traffic_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models", type=positive_int, default=24, help="how many models serve (default 24)"
    )
    p.add_argument(
        "--predictions-per-model",
        type=positive_int,
        default=3000,
        help="predictions each model makes over the simulated 48 h (default 3000)",
    )
    p.add_argument(
        "--seed", type=int, default=7, help="the seed of the traffic: same seed, same events"
    )


def _worker_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="host:port or kafka://host:port (env WATCHKEEPER_BROKER)")
    p.add_argument("--app-id", help="consumer group / app id (env WATCHKEEPER_APP_ID)")
    p.add_argument(
        "--partitions", type=positive_int, help="partitions for topics the worker creates"
    )
    p.add_argument(
        "--config",
        dest="detector_config",
        type=Path,
        help="detector configuration, TOML or YAML (per-model overrides)",
    )
    p.add_argument("--data-dir", type=Path, help="Faust data directory")
    p.add_argument("--log-level", choices=["crit", "error", "warn", "info", "debug"])
    _metrics_flag(p)
    add_kafka_flags(p)
    add_redis_flags(p.add_argument_group("Redis"))


def _metrics_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port, all interfaces, at /metrics "
        "(env WATCHKEEPER_METRICS_PORT; default 0: off)",
    )


def _connection_flags(
    p: argparse.ArgumentParser, *, broker: bool = False, metrics: bool = False
) -> None:
    if broker:
        p.add_argument("--broker", help="host:port or kafka://host:port (env WATCHKEEPER_BROKER)")
        add_kafka_flags(p)
    if metrics:
        _metrics_flag(p)
    add_redis_flags(p.add_argument_group("Redis"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchkeeper", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"watchkeeper {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run the join + detection worker against a broker")
    _worker_flags(worker)
    demo = sub.add_parser("demo", help="everything embedded: broker, Redis, worker, traffic")
    _traffic_flags(demo)
    demo.add_argument(
        "--timeout", type=positive_float, default=150.0, help="seconds to wait for the worker"
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the stack up after the summary, with the web page and metrics, until "
        "Ctrl-C: try status, alerts, ack and ui against it",
    )
    demo.add_argument(
        "--ui-port",
        type=port_number,
        default=0,
        help="with --keep-running: the web page's port (default: a free one)",
    )
    sim = sub.add_parser("simulate", help="publish seeded synthetic traffic to a broker")
    sim.add_argument("--broker", help="host:port or kafka://host:port (env WATCHKEEPER_BROKER)")
    _traffic_flags(sim)
    add_kafka_flags(sim)
    add_owner_commands(sub)
    add_replay_command(sub)
    add_notify_commands(sub, _connection_flags)
    add_status_command(sub, _connection_flags)
    add_alerts_command(sub, _connection_flags)
    add_report_command(sub, _connection_flags)
    add_ui_command(sub, _connection_flags)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from flags that were given, the environment, then defaults."""
    names = (
        "broker",
        *REDIS_FLAG_FIELDS,
        "app_id",
        "partitions",
        "detector_config",
        "data_dir",
        "log_level",
        "metrics_port",
    )
    given: dict[str, object] = {
        n: getattr(args, n) for n in names if getattr(args, n, None) is not None
    }
    try:
        kafka = kafka_from(args)
        if kafka is not None:
            given["kafka"] = kafka
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(settings_problem(exc)) from None


def settings_problem(exc: ValidationError) -> str:
    """One line per bad setting, named as a user sets it (not pydantic's dump)."""
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


def check_broker_of(settings: Settings) -> None:
    """One line within seconds, not aiokafka's 40 s, when no Kafka broker answers."""
    import asyncio

    from streams.connections import check_broker

    asyncio.run(check_broker(settings.bootstrap_servers, settings.kafka))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warn_about_secrets_in_argv(args)
    try:
        if args.command == "worker":
            from streams.worker.run import run_worker

            run_worker(settings_from(args))
            return 0
        if args.command == "demo":
            from streams.dev.demo import run_demo

            return run_demo(
                models=args.models,
                predictions_per_model=args.predictions_per_model,
                seed=args.seed,
                timeout=args.timeout,
                keep_running=args.keep_running,
                ui_port=args.ui_port,
            )
        if args.command == "replay":
            return run_replay(args, settings_from(args))
        if args.command == "owners":
            return run_owners(args)
        if args.command == "status":
            return run_status(args, settings_from(args))
        if args.command == "alerts":
            return run_alerts(args, settings_from(args))
        if args.command == "report":
            return run_report(args, settings_from(args))
        if args.command == "ui":
            return run_ui(args, settings_from(args))
        if args.command in ("notify", "ack", "silence", "unsilence"):
            settings = settings_from(args)
            if args.command == "notify":
                check_broker_of(settings)
            return run_notify_command(args, settings)
        if args.command == "simulate":
            import asyncio

            from streams.dev.demo import produce_scenario
            from streams.dev.simulate import build_scenario

            settings = settings_from(args)
            check_broker_of(settings)
            scenario = build_scenario(
                models=args.models,
                predictions_per_model=args.predictions_per_model,
                seed=args.seed,
                degraded=min(3, args.models),
            )
            asyncio.run(produce_scenario(settings.bootstrap_servers, scenario, settings))
            print(f"published {len(scenario.events)} events for {len(scenario.models)} models")
            return 0
    except WatchkeeperError as exc:
        print(f"watchkeeper: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2
