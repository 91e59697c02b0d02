"""``ebee completion bash``: a bash completion script generated from the argparse parser,
so every subcommand and option the parser has is completed (nothing to keep in sync).

The script holds one table: for each command path (``prog``, ``prog dump``) the words
that may follow it -- its subcommands, its options, and the choices of its first
positional argument (``xlated jited``); bpftool's selector keywords where a command
takes a program or a map.
"""
from __future__ import annotations

import argparse

# where a positional names an object, bpftool's keywords complete it
_SELECTOR_WORDS = {"PROG": "id pinned name tag", "MAP": "id pinned name",
                   "LINK": "id pinned", "PROG [opcodes] [linum]": "id pinned name tag",
                   "PROG ARGS": "id pinned name tag", "PROG FILE": "id pinned name tag",
                   "PROG [TARGET]": "id pinned name tag", "MAP key BYTES": "id pinned name",
                   "MAP key BYTES value BYTES": "id pinned name", "MAP FILE": "id pinned name",
                   "LINK FILE": "id pinned"}


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def command_table(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Command path ("" for the top level) -> the words that may follow it."""
    table: dict[str, list[str]] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        words: list[str] = []
        subs = _subparsers(p)
        words += subs
        for a in p._actions:
            words += [o for o in a.option_strings if o.startswith("--") or len(o) == 2]
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction):
                if a.choices:
                    words += [str(c) for c in a.choices]
                if a.metavar in _SELECTOR_WORDS:
                    words += _SELECTOR_WORDS[a.metavar].split()
        table[path] = sorted(dict.fromkeys(words))
        for name, sp in subs.items():
            walk(sp, f"{path} {name}".strip())

    walk(parser, "")
    # bpftool's global output flags, taken anywhere (cli/common.py split_output_flags)
    table[""] = sorted(set(table[""]) | {"-j", "--json", "-p", "--pretty"})
    return table


def bash_script(parser: argparse.ArgumentParser, kernel_parser: argparse.ArgumentParser) \
        -> str:
    """The completion script: ``source <(ebee completion bash)``."""
    table = command_table(parser)
    for k, v in command_table(kernel_parser).items():     # --kernel's own commands
        table[k] = sorted(set(table.get(k, [])) | set(v))
    cases = "\n".join(f"        \"{k}\") words=\"{' '.join(v)}\" ;;" for k, v in table.items())
    return f"""# bash completion for ebee, generated from its argument parser by
# `ebee completion bash`: source <(ebee completion bash)
_ebee() {{
    local cur path words i w
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    path=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        [[ "$w" == -* ]] && continue
        if _ebee_has "${{path:+$path }}$w"; then path="${{path:+$path }}$w"; fi
    done
    case "$path" in
{cases}
        *) words="" ;;
    esac
    if [[ -n "$words" ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
    [[ ${{#COMPREPLY[@]}} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
    return 0
}}
_ebee_has() {{
    case "$1" in
{chr(10).join(f'        "{k}") return 0 ;;' for k in table if k)}
    esac
    return 1
}}
complete -F _ebee ebee
"""


def register(sub) -> None:
    p = sub.add_parser("completion", help="print a shell completion script: "
                                          "source <(ebee completion bash)")
    p.add_argument("shell", choices=("bash",))
    p.set_defaults(func=cmd_completion)


def cmd_completion(args) -> int:
    from .main import build_parser
    print(bash_script(build_parser(kernel=False), build_parser(kernel=True)), end="")
    return 0
