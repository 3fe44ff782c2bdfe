"""``agentguard profile ...``: status, show, merge, learn from traces, turn into a policy."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["add_profile_command"]


def add_profile_command(commands: Any) -> None:
    """Add the ``profile`` subcommand to the ``agentguard`` parser."""
    profile = commands.add_parser(
        "profile", help="inspect, merge and learn behavioural profiles, and turn them into policies",
        description="Behavioural profiles: what an agent normally does, learned in learn mode "
                    "(instrument(mode='learn', profile=FILE)) or from exported traces.")
    actions = profile.add_subparsers(dest="profile_command", required=True)

    status = actions.add_parser("status", help="how far learning has come, per tool")
    status.add_argument("profile")
    _threshold_options(status)
    status.add_argument("--verbose", "-v", action="store_true",
                        help="list every under-observed dimension")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--check", action="store_true",
                        help="exit with status 1 unless every tool is mature")
    status.set_defaults(handler=_status)

    show = actions.add_parser("show", help="print a profile")
    show.add_argument("profile")
    show.add_argument("--tool", help="only this tool")
    show.add_argument("--json", action="store_true", help="print the profile's JSON")
    _threshold_options(show)
    show.set_defaults(handler=_show)

    merge = actions.add_parser("merge", help="combine profiles learned by several replicas")
    merge.add_argument("profiles", nargs="+", metavar="PROFILE")
    merge.add_argument("-o", "--output", required=True, help="the merged profile (written atomically)")
    merge.set_defaults(handler=_merge)

    learn = actions.add_parser(
        "learn", help="learn a profile from exported OTLP/JSON traces",
        description="Learn a profile from OTLP/JSON trace files (as the OpenTelemetry Collector's "
                    "file exporter writes them, optionally gzip-compressed) made by agentguard, "
                    "OpenInference or OpenLLMetry instrumentation.")
    learn.add_argument("--from", dest="sources", nargs="+", required=True, metavar="FILE")
    learn.add_argument("-o", "--output", required=True,
                       help="the profile to write (extended if it exists, unless --replace)")
    learn.add_argument("--agent", help="the agent's name in the profile (default: --service, or "
                                       "the service.name of the traces)")
    learn.add_argument("--service", help="learn only spans of this service.name")
    learn.add_argument("--replace", action="store_true", help="overwrite the output profile")
    learn.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar")
    learn.set_defaults(handler=_learn)

    to_policy = actions.add_parser(
        "to-policy", help="write a reviewable policy from a profile (allowed tools, argument "
                          "bounds, destinations, processes)")
    to_policy.add_argument("profile")
    to_policy.add_argument("-o", "--output", required=True, help="the policy file (YAML)")
    to_policy.add_argument("--action", choices=["alert", "block"], default="block",
                           help="what high-severity rules on learned parts do (default: block; "
                                "the other rules alert)")
    to_policy.add_argument("--strict", action="store_true",
                           help="every rule on a learned part uses --action, not only "
                                "high-severity ones")
    _threshold_options(to_policy)
    to_policy.set_defaults(handler=_to_policy)


def _threshold_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-observations", type=int, default=None,
                        help="observations before a part of the profile counts as learned")
    parser.add_argument("--max-new-rate", type=float, default=None,
                        help="new-value rate below which a value set counts as learned")


def _thresholds(args: argparse.Namespace) -> Any:
    from agentguard.baseline import Thresholds

    values: dict[str, Any] = {}
    if getattr(args, "min_observations", None) is not None:
        values["min_observations"] = args.min_observations
    if getattr(args, "max_new_rate", None) is not None:
        values["max_new_rate"] = args.max_new_rate
    return Thresholds(**values)


def _fail(message: str) -> int:
    print(f"agentguard profile: {message}", file=sys.stderr)
    return 2


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _status(args: argparse.Namespace) -> int:
    from agentguard.baseline import ProfileError, load_profile, profile_status
    from agentguard.baseline.render import render_status, status_dict

    try:
        status = profile_status(load_profile(args.profile), _thresholds(args))
    except (ProfileError, ValueError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(status_dict(status), indent=2))
    else:
        render_status(status, _console(), verbose=args.verbose)
    return 1 if args.check and not status.ready else 0


def _show(args: argparse.Namespace) -> int:
    from agentguard._text import visible
    from agentguard.baseline import ProfileError, load_profile, profile_status
    from agentguard.baseline.profile import terminal_safe_json
    from agentguard.baseline.render import render_profile

    try:
        profile = load_profile(args.profile)
        status = profile_status(profile, _thresholds(args))
    except (ProfileError, ValueError) as exc:
        return _fail(str(exc))
    if args.tool is not None and args.tool not in profile.tools:
        known = ", ".join(sorted(profile.tools)[:20]) or "none"
        return _fail(f"no tool {visible(args.tool)} in this profile (tools: {visible(known)})")
    if args.json:
        document = json.loads(profile.to_json())
        if args.tool is not None:
            # The same document, with only that tool: read by the same code as the whole one.
            # The agent-wide parts (calls per turn, activity outside tools) are left out.
            tools = document.get("tools", {})
            document = {key: document[key] for key in ("format", "version", "agent", "limits")}
            document["tools"] = {args.tool: tools.get(args.tool, {})}
        # Learned values stay readable (no \u escapes for every accented letter), except the
        # characters a terminal would act on.
        print(terminal_safe_json(json.dumps(document, indent=2, ensure_ascii=False)))
        return 0
    render_profile(profile, _console(), tool=args.tool, status=status)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from agentguard.baseline import ProfileError, load_profile, merge_profiles, save_profile
    from agentguard.baseline.store import locked

    try:
        merged = merge_profiles(*(load_profile(path) for path in args.profiles))
        # Under the lock learning processes take to add to the file, so none of them reads
        # the old file before this write and writes it back after.
        with locked(args.output):
            save_profile(merged, args.output)
    except ProfileError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.output}: cannot write ({exc.strerror or exc})")
    print(f"merged {len(args.profiles)} profiles of agent {merged.agent!r} "
          f"({merged.events:,} events, {len(merged.tools)} tools) into {args.output}")
    return 0


def _learn(args: argparse.Namespace) -> int:
    from agentguard.baseline import Learner, Profile, ProfileError, load_profile, save_profile
    from agentguard.baseline.otlp import learn_otlp_files, peek_service
    from agentguard.baseline.store import locked, merge_into_file

    missing = [path for path in args.sources if not os.path.exists(path)]
    if missing:
        return _fail(f"no such file: {', '.join(missing)}")
    unreadable: list[str] = []
    agent = args.agent or args.service or peek_service(args.sources, unreadable)
    if not agent:
        for error in unreadable[:20]:
            print(f"agentguard profile learn: {error}", file=sys.stderr)
        if unreadable:
            return _fail("no span could be read from the traces given")
        return _fail("the traces name no service.name; give the agent's name with --agent")
    existing = None
    if os.path.exists(args.output) and not args.replace:
        try:
            existing = load_profile(args.output)
        except ProfileError as exc:
            return _fail(f"{exc} (not overwritten; use --replace to start a new profile)")
        if existing.agent != agent:
            return _fail(f"{args.output} is the profile of agent {existing.agent!r}, not {agent!r}")
    learner = Learner(Profile(agent=agent, limits=existing.limits) if existing is not None
                      else Profile(agent=agent))
    total = sum(os.path.getsize(path) for path in args.sources)
    if args.progress:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(TextColumn("[bold]learning[/bold]"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeRemainingColumn(),
                      console=_console_stderr(), transient=False) as progress:
            task = progress.add_task("learn", total=total)
            stats = learn_otlp_files(args.sources, learner, service=args.service,
                                     advance=lambda size: progress.advance(task, size))
    else:
        stats = learn_otlp_files(args.sources, learner, service=args.service)
    for error in stats.errors[:20]:
        print(f"agentguard profile learn: {error}", file=sys.stderr)
    if stats.errors and not stats.spans:
        return _fail(f"no span could be read from the traces given; {args.output} not written")
    try:
        if args.replace:
            with locked(args.output):
                save_profile(learner.profile, args.output)
            profile = learner.profile
        else:
            # Read again under the lock: agents learning into the same file may have added to
            # it while the traces were read, and their observations are kept.
            profile = merge_into_file(args.output, learner.profile, existing)
    except ProfileError as exc:
        return _fail(f"{exc}; {args.output} not changed")
    except OSError as exc:
        return _fail(f"{args.output}: cannot write ({exc.strerror or exc})")
    conventions = ", ".join(f"{name} {count:,}" for name, count in
                            sorted(stats.conventions.items(), key=lambda item: -item[1]))
    print(f"learned {stats.learned:,} events from {stats.spans:,} spans in {stats.traces:,} "
          f"traces ({conventions or 'no spans'}) into {args.output} (agent {agent!r}, "
          f"{len(profile.tools)} tools)")
    if stats.skipped:
        print("not learned: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items())))
    return 0


def _console_stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _to_policy(args: argparse.Namespace) -> int:
    from agentguard.baseline import ProfileError, load_profile
    from agentguard.baseline.policy import policy_yaml

    try:
        profile = load_profile(args.profile)
        text = policy_yaml(profile, _thresholds(args), action=args.action, strict=args.strict)
    except (ProfileError, ValueError) as exc:
        return _fail(str(exc))
    from agentguard.baseline.store import write_text_atomic

    try:
        write_text_atomic(args.output, text)
    except OSError as exc:
        return _fail(f"{args.output}: cannot write ({exc.strerror or exc})")
    print(f"wrote a policy for agent {profile.agent!r} ({len(profile.tools)} tools) to "
          f"{args.output}; review it, then use it with instrument(policy={args.output!r})")
    return 0
