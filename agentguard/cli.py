"""The ``agentguard`` command line."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

__all__ = ["main"]

_RUN_OPTIONS = {
    "service_name": "AGENTGUARD_SERVICE_NAME",
    "mode": "AGENTGUARD_MODE",
    "exporter": "AGENTGUARD_EXPORTER",
    "capture_content": "AGENTGUARD_CAPTURE_CONTENT",
    "otlp_endpoint": "AGENTGUARD_OTLP_ENDPOINT",
    "otlp_protocol": "AGENTGUARD_OTLP_PROTOCOL",
    "findings_file": "AGENTGUARD_FINDINGS_FILE",
    "collector_endpoint": "AGENTGUARD_COLLECTOR_ENDPOINT",
}


def _run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("agentguard run: give the command to run, e.g. agentguard run -- python agent.py",
              file=sys.stderr)
        return 2
    if command[0].endswith(".py"):
        command = [sys.executable, *command]
    env = dict(os.environ)
    for option, variable in _RUN_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            env[variable] = str(value)
    from agentguard.aibom.cli import run_environment

    try:
        run_environment(args, env)
    except ValueError as exc:
        print(f"agentguard run: {exc}", file=sys.stderr)
        return 2
    # Validate the configuration here, where a mistake can be reported before the program starts.
    from agentguard.config import ConfigError, resolve_config

    try:
        config = resolve_config({}, env)
        if config.policy:
            from agentguard.policy._setup import load_policy_items

            load_policy_items(config.policy)  # a bad policy file names its line here
        if config.aibom_declared or config.aibom_models:
            from agentguard.aibom import DeclaredError, load_declared

            try:  # a declared-dependency or models file that cannot be read names it here
                load_declared(config.aibom_declared, config.aibom_models)
            except DeclaredError as exc:
                raise ConfigError(f"aibom: {exc}") from None
    except ConfigError as exc:
        print(f"agentguard run: {exc}", file=sys.stderr)
        return 2
    bootstrap = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (bootstrap, env.get("PYTHONPATH")) if p)
    env["AGENTGUARD_AUTO_INSTRUMENT"] = "1"
    executable = shutil.which(command[0], path=env.get("PATH")) or command[0]
    try:
        os.execve(executable, command, env)
    except OSError as exc:
        print(f"agentguard run: cannot start {command[0]}: {exc}", file=sys.stderr)
        return 127


def _demo(args: argparse.Namespace) -> int:
    try:
        from agentguard.demo.runner import run_demo
    except ImportError as exc:
        print(f"agentguard demo needs the demo extra (pip install 'agentguard[demo]'): {exc}",
              file=sys.stderr)
        return 2
    only: list[int] | None = None
    if args.only:
        try:
            only = [int(part) for part in args.only.split(",") if part.strip()]
        except ValueError:
            print(f"agentguard demo: --only takes scenario numbers such as 1,3; got {args.only!r}",
                  file=sys.stderr)
            return 2
    return run_demo(args.output, only=only, use_collector=not args.no_collector,
                    sensor=args.sensor, otlp=args.otlp)


def _version(args: argparse.Namespace) -> int:
    import agentguard

    print(f"agentguard {agentguard.__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentguard", description="Runtime security for AI agents.")
    commands = parser.add_subparsers(dest="command_name", required=True)

    run = commands.add_parser(
        "run",
        help="run a Python program with agentguard instrumentation, without changing its code",
        description="Run COMMAND with agentguard instrumentation. Settings come from the options "
                    "below or the AGENTGUARD_* / OTEL_* environment variables.",
    )
    run.add_argument("--service-name", dest="service_name")
    run.add_argument("--mode", choices=["learn", "monitor", "enforce"])
    run.add_argument("--exporter", choices=["otlp", "console", "none"])
    run.add_argument("--capture-content", dest="capture_content",
                     choices=["full", "redacted", "hash", "none"])
    run.add_argument("--otlp-endpoint", dest="otlp_endpoint")
    run.add_argument("--otlp-protocol", dest="otlp_protocol", choices=["grpc", "http/protobuf"])
    run.add_argument("--findings-file", dest="findings_file")
    run.add_argument("--collector-endpoint", dest="collector_endpoint", metavar="URL",
                     help="send spans to the agentguard collector at URL (e.g. "
                          "http://127.0.0.1:4318 or grpc://127.0.0.1:4317)")
    from agentguard.aibom.cli import add_run_options

    add_run_options(run)
    run.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments")
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo", help="run the threat scenarios end to end (learn, then attack under enforce)",
        description="Run the seed's threat scenarios with scripted agents on loopback: each "
                    "learns on benign traffic, then is attacked in enforce mode. Starts the "
                    "collector (eBPF when available, else the /proc fallback), prints what the "
                    "control plane logged beside what agentguard found, writes one HTML report "
                    "per scenario and exits non-zero if any scenario was not detected.")
    demo.add_argument("--output", default="demo-output", metavar="DIR",
                      help="where the HTML reports go (default: demo-output)")
    demo.add_argument("--only", metavar="N[,N]", help="run only these scenario numbers")
    demo.add_argument("--no-collector", action="store_true",
                      help="do not start the collector (in-process sensor only)")
    demo.add_argument("--sensor", choices=["auto", "ebpf", "procfs"], default="auto",
                      help="the collector's kernel sensor (default: eBPF when available)")
    demo.add_argument("--otlp", metavar="URL",
                      help="also send the spans to this OTLP endpoint (the collector forwards "
                           "them; without it the agents export there directly)")
    demo.set_defaults(handler=_demo)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_version)

    from agentguard.policy.cli import add_parser as add_policy

    add_policy(commands)

    from agentguard.baseline.cli import add_profile_command

    add_profile_command(commands)

    from agentguard.aibom.cli import add_parser as add_aibom

    add_aibom(commands)

    from agentguard.collector.cli import add_incidents_parser
    from agentguard.collector.cli import add_parser as add_collector

    add_collector(commands)
    add_incidents_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
    except BrokenPipeError:
        # The reader went away (`agentguard aibom ... | head`): stop quietly. Python would
        # report the same error again flushing stdout at exit; point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
