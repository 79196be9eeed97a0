"""Command lines whose options may come before or after the ``KEY VALUE`` overrides."""

import argparse
from typing import List, Optional, Sequence

__all__ = ["parse_args_any_order"]


def parse_args_any_order(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None, opts_dest: str = "opts"
) -> argparse.Namespace:
    """
    ``parser.parse_args``, except that options given after the config overrides are
    options, not overrides.

    Detectron2's tools collect the ``KEY VALUE`` overrides with ``nargs=REMAINDER``,
    which swallows everything after the first override: ``... SOLVER.BASE_LR 0.01
    --resume`` would hand "--resume" to the config as a key. Here each token of the
    remainder that names one of ``parser``'s options is parsed as that option (with
    its value, if it takes one); the rest stay overrides, in order.

    Args:
        parser: a parser with a REMAINDER positional argument ``opts_dest``.
        argv: the arguments (default: ``sys.argv[1:]``).
        opts_dest: the destination of the REMAINDER argument.

    Raises:
        SystemExit: through ``parser.error``, for an unknown option among the overrides.
    """
    # A required option may come after the overrides: check those once both parses ran.
    required = [action for action in parser._actions if action.required]
    for action in required:
        action.required = False
    try:
        args = parser.parse_args(argv)
        overrides, options = _split_remainder(parser, getattr(args, opts_dest))
        if options:
            args = parser.parse_args(options, namespace=args)
    finally:
        for action in required:
            action.required = True
    missing = [action for action in required if getattr(args, action.dest, None) is None]
    if missing:
        names = ", ".join("/".join(a.option_strings) or a.dest for a in missing)
        parser.error(f"the following arguments are required: {names}")
    setattr(args, opts_dest, overrides)
    return args


def _split_remainder(parser, tokens: List[str]):
    # argparse has no public table of option strings; _option_string_actions is the one
    # parse_args itself uses.
    actions = parser._option_string_actions
    overrides, options = [], []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name = _full_option_name(parser, token.split("=", 1)[0], actions)
        if name.startswith("--") or (name.startswith("-") and name in actions):
            if name not in actions:
                parser.error(f"unknown option {token!r} among the KEY VALUE overrides")
            count = 1 + _value_count(actions[name], token, tokens[i + 1 :], actions)
            options.extend(tokens[i : i + count])
            i += count
        else:
            overrides.append(token)
            i += 1
    return overrides, options


def _full_option_name(parser, name: str, actions) -> str:
    # argparse takes a unique prefix of a long option ("--config" for "--config-file")
    # before the overrides; so does this after them.
    if name in actions or not name.startswith("--") or not parser.allow_abbrev:
        return name
    matches = [option for option in actions if option.startswith(name)]
    return matches[0] if len(matches) == 1 else name


def _value_count(action, token, following, actions) -> int:
    """How many of the ``following`` tokens are the values of ``action``."""
    if "=" in token or action.nargs == 0:
        return 0
    if action.nargs is None or action.nargs == "?":
        return min(1, len(following))
    if isinstance(action.nargs, int):
        return action.nargs
    # "+", "*": up to the next option.
    count = 0
    while count < len(following) and following[count].split("=", 1)[0] not in actions:
        count += 1
    return count
