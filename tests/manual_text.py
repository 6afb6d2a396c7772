"""Reading the user manual (README.md, BENCHMARKS.md, docs/**/*.md) the way GitHub renders it.

Plain functions of text and paths, without pytest, so that tests/test_manual.py can run each check
on the real manual and on a few lines of synthetic Markdown alike. Only what the checks need is
parsed: fenced code blocks, inline code spans, link targets, headings and their anchors, and the
rows of the config-group table.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

# The manual's pages outside docs/ (docs/**/*.md are found by glob, so new pages count at once).
TOP_PAGES = ("README.md", "BENCHMARKS.md")


def manual_pages(root: Path) -> list[Path]:
    """Every page of the manual under ``root`` that exists today."""
    pages = [root / name for name in TOP_PAGES if (root / name).is_file()]
    return pages + sorted(p for p in (root / "docs").glob("**/*.md") if p.is_file())


# --- Fenced code blocks and prose ------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string's first word (``""`` when unlabeled) and its lines."""

    lang: str
    first_line: int  # the line number (1-based) of its first content line
    lines: tuple[str, ...]


def split_fences(text: str) -> tuple[str, list[Block]]:
    """The text with every fenced block's lines blanked (line numbers kept), and the blocks.

    A fence is three or more backticks or tildes, at any indentation (blocks inside list items
    are indented); it closes at a fence of the same character at least as long, as in CommonMark.
    An unclosed fence runs to the end of the page.
    """
    prose: list[str] = []
    blocks: list[Block] = []
    opening: re.Match[str] | None = None
    content: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if opening is None:
            match = FENCE.match(line)
            if match:
                opening, content, start = match, [], number + 1
                prose.append("")
            else:
                prose.append(line)
            continue
        fence = opening["fence"]
        if re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            blocks.append(Block(opening["info"].lower(), start, tuple(content)))
            opening = None
        else:
            content.append(line)
        prose.append("")
    if opening is not None:
        blocks.append(Block(opening["info"].lower(), start, tuple(content)))
    return "\n".join(prose), blocks


def line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


# --- Inline code spans -------------------------------------------------------------------------------

BACKTICKS = re.compile(r"(?<!`)`+(?!`)")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def code_spans(prose: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, content)`` of each inline code span of ``prose`` (text outside fenced blocks).

    As CommonMark reads them: a run of n backticks opens a span that the next run of exactly n
    closes, within one paragraph (a span may cross a line break, which counts as a space); a run
    with no partner is literal text. The content loses one space at each end when it has both.
    """
    position = 0
    while True:
        opening = BACKTICKS.search(prose, position)
        if opening is None:
            return
        paragraph_end = PARAGRAPH_BREAK.search(prose, opening.end())
        limit = paragraph_end.start() if paragraph_end else len(prose)
        closing = None
        for candidate in BACKTICKS.finditer(prose, opening.end(), limit):
            if len(candidate.group()) == len(opening.group()):
                closing = candidate
                break
        if closing is None:
            position = opening.end()
            continue
        content = prose[opening.end():closing.start()].replace("\n", " ")
        if len(content) > 1 and content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        yield opening.start(), closing.end(), content
        position = closing.end()


def without_code_spans(prose: str) -> str:
    """``prose`` with every code span blanked (newlines kept): a link written in code is no link."""
    chars = list(prose)
    for start, end, _ in code_spans(prose):
        for index in range(start, end):
            if chars[index] != "\n":
                chars[index] = " "
    return "".join(chars)


# --- Headings and anchors ------------------------------------------------------------------------

ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
HTML_ANCHOR = re.compile(r"""<[a-zA-Z][^>]*?\s(?:id|name)\s*=\s*["']([^"']+)["']""")


def heading_texts(prose: str) -> list[str]:
    """The text of every ATX (``## Title``) and setext (``Title`` over ``===``/``---``) heading."""
    lines = prose.splitlines()
    texts: list[str] = []
    for index, line in enumerate(lines):
        atx = ATX_HEADING.match(line)
        if atx:
            texts.append(atx.group(2) or "")
            continue
        previous = lines[index - 1] if index else ""
        if (SETEXT_UNDERLINE.match(line) and previous.strip() and not ATX_HEADING.match(previous)
                and not re.match(r"\s*([|>]|[-*+] |\d+[.)] )", previous)
                and not (index >= 2 and SETEXT_UNDERLINE.match(previous))):
            texts.append(previous.strip())
    return texts


def rendered_heading(text: str) -> str:
    """A heading's text as GitHub shows it: code spans, links, images, HTML and emphasis unwrapped."""
    spans = [(start, end, content) for start, end, content in code_spans(text)]
    parts: list[str] = []
    codes: list[str] = []
    position = 0
    for start, end, content in spans:  # code keeps its underscores: hide it from the emphasis rules
        parts.append(text[position:start])
        parts.append(f"\x00{len(codes)}\x00")
        codes.append(content)
        position = end
    parts.append(text[position:])
    plain = "".join(parts)
    plain = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", plain)  # [text](url), ![alt](src)
    plain = re.sub(r"<[^>]+>", "", plain)  # HTML tags
    plain = re.sub(r"(?<![\w\\])(__?)(?=\S)(.+?)(?<=\S)\1(?!\w)", r"\2", plain)  # _emphasis_, __strong__
    plain = re.sub(r"\\(.)", r"\1", plain)  # backslash escapes
    plain = html.unescape(plain)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], plain)


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading of rendered ``text`` (before duplicate suffixes).

    Lowercase; every character other than a letter, digit, space, hyphen or underscore dropped;
    each space a hyphen (runs are not merged).
    """
    kept = "".join(ch for ch in text.strip().lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def page_anchors(text: str) -> set[str]:
    """Every anchor a link may name on a page: heading slugs (repeats get -1, -2, ... as GitHub
    numbers them) and explicit ``<a id=...>`` / ``<a name=...>`` anchors."""
    prose, _ = split_fences(text)
    occurrences: dict[str, int] = {}
    anchors: set[str] = set()
    for heading in heading_texts(prose):  # github-slugger's numbering of repeats
        original = slug = github_slug(rendered_heading(heading))
        while slug in occurrences:
            occurrences[original] += 1
            slug = f"{original}-{occurrences[original]}"
        occurrences[slug] = 0
        anchors.add(slug)
    anchors.update(HTML_ANCHOR.findall(without_code_spans(prose)))
    return anchors


# --- Links ---------------------------------------------------------------------------------------

# The destination after "](": <anything> or a run without spaces (balanced parentheses allowed),
# then an optional "title".
INLINE_LINK = re.compile(
    r"""\]\(\s*(<[^>\n]*>|(?:[^\s()<>]|\([^\s()]*\))+)?(?:\s+(?:"[^"\n]*"|'[^'\n]*'))?\s*\)""")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)", re.MULTILINE)
HTML_LINK = re.compile(r"""<(?:img|a|source)\b[^>]*?\s(?:src|href)\s*=\s*(?:"([^"]*)"|'([^']*)')""",
                       re.IGNORECASE)
SCHEME = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")


def link_targets(text: str) -> list[tuple[int, str]]:
    """``(line, target)`` of every link and image of a page outside code: ``[text](target)``,
    ``![alt](target)``, ``[ref]: target`` and HTML ``src``/``href``, in page order."""
    prose, _ = split_fences(text)
    prose = without_code_spans(prose)
    found: list[tuple[int, str]] = []
    for match in INLINE_LINK.finditer(prose):
        found.append((match.start(), match.group(1) or ""))
    for match in REFERENCE_DEFINITION.finditer(prose):
        found.append((match.start(1), match.group(1)))
    for match in HTML_LINK.finditer(prose):
        found.append((match.start(), match.group(1) if match.group(1) is not None else match.group(2)))
    return [(line_of(prose, position), target.strip().removeprefix("<").removesuffix(">"))
            for position, target in sorted(found)]


def is_external(target: str) -> bool:
    """A link to another site or program (http:, https:, mailto:, ...): not checked here."""
    return bool(SCHEME.match(target))


def link_problem(root: Path, page: Path, target: str) -> str | None:
    """Why the relative link ``target`` on ``page`` is broken, or None when it resolves.

    The file (relative to the page; ``/...`` relative to ``root``, as GitHub reads it) must exist
    inside ``root`` and not be ignored by git (a file only in this checkout is missing from every
    other); an ``#anchor`` into a Markdown page (or alone: this page) must be one of its anchors.
    """
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    if not path_part:
        file = page
    elif path_part.startswith("/"):
        file = root / path_part.lstrip("/")
    else:
        file = page.parent / path_part
    file = Path(os.path.normpath(file))
    if not file.is_relative_to(os.path.normpath(root)):
        return f"{target}: {path_part} is outside the repository"
    if not file.exists():
        return f"{target}: no file {file.relative_to(os.path.normpath(root))}"
    if is_git_ignored(root, file):
        return f"{target}: {file.relative_to(os.path.normpath(root))} is ignored by git (not in a clone)"
    anchor = unquote(anchor)
    if anchor and file.suffix.lower() == ".md" and file.is_file():
        anchors = page_anchors(file.read_text(encoding="utf-8"))
        if anchor not in anchors:
            return f"{target}: {file.name} has no heading or anchor #{anchor}"
    return None


@cache
def _git_files(root: Path) -> frozenset[str] | None:
    """The files git keeps or would keep under ``root`` (tracked, and untracked but not ignored);
    None where ``root`` is no git checkout (then nothing counts as ignored)."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True, timeout=60,
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    return frozenset(name for name in listing.split("\0") if name)


def is_git_ignored(root: Path, file: Path) -> bool:
    """Whether ``file`` (a file, or a folder and all in it) is left out of git under ``root``.

    Reached through a symlinked folder (``conf`` -> ``src/layerscope/conf``), it counts by its target.
    """
    kept = _git_files(root)
    if kept is None:
        return False
    names = {file.relative_to(os.path.normpath(root)).as_posix()}
    real, real_root = Path(os.path.realpath(file)), Path(os.path.realpath(root))
    if real.is_relative_to(real_root):
        names.add(real.relative_to(real_root).as_posix())
    if names & {"."}:
        return False
    if file.is_dir():
        return not any(kept_name.startswith(f"{name}/") for name in names for kept_name in kept)
    return not names & kept


def top_level_entries(root: Path) -> set[str]:
    """The names at the top of the repository: those git keeps, else those in the folder."""
    kept = _git_files(root)
    if kept is not None:
        return {name.split("/", 1)[0] for name in kept}
    return {p.name for p in root.iterdir() if p.name not in (".git", ".venv")}


# --- Commands ------------------------------------------------------------------------------------

SHELL_BLOCKS = {"bash", "sh", "shell", "zsh"}     # a script: every line is a command
SESSION_BLOCKS = {"", "console", "shell-session"}  # a session: "$ " lines are commands, the rest output
PROMPT = re.compile(r"^\s*(?:\([^)\s]*\)\s*)?\$\s+")  # "$ cmd", "(.venv) $ cmd"
PROGRAMS = {"train.py": "train", "eval.py": "eval", "predict.py": "predict", "export.py": "export",
            "layerscope-train": "train", "layerscope-eval": "eval", "layerscope-predict": "predict",
            "layerscope-export": "export"}
OPERATORS = {";", "&", "&&", "|", "||", ";;", "|&"}
REDIRECT = re.compile(r"^\d*(?:>>?|<)")


@dataclass(frozen=True)
class Command:
    """One run of an entry point shown in the manual: where, the config it composes, its arguments,
    and the ``error: ...`` line the manual shows it printing, if it shows one."""

    page: str
    line: int
    config_name: str
    argv: tuple[str, ...]
    text: str
    shown_error: str | None = None


def block_command_lines(block: Block) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """``(line, command, output)`` of each command a code block shows, ``\\`` continuations joined.

    In shell blocks every line is a command (a leading ``$`` prompt dropped) and ``output`` is empty;
    in unlabeled and ``console`` blocks only the lines after a ``$`` prompt are, and ``output`` holds
    the lines up to the next prompt: what the command printed (BENCHMARKS.md quotes output lines
    that begin ``python train.py ...: 3 run(s)``, which are no commands).
    """
    if block.lang not in SHELL_BLOCKS | SESSION_BLOCKS:
        return
    prompted = block.lang in SESSION_BLOCKS
    lines = list(block.lines)
    index = 0
    while index < len(lines):
        number, line = block.first_line + index, lines[index]
        index += 1
        prompt = PROMPT.match(line)
        if prompted and not prompt:
            continue
        command = line[prompt.end():] if prompt else line
        while command.rstrip().endswith("\\") and index < len(lines):
            command = command.rstrip()[:-1] + " " + lines[index].strip()
            index += 1
        output: list[str] = []
        while prompted and index < len(lines) and not PROMPT.match(lines[index]):
            output.append(lines[index])
            index += 1
        yield number, command.strip(), tuple(output)


def entry_point_runs(command: str) -> Iterator[tuple[str, list[str]]]:
    """``(config_name, argv)`` for each run of an entry point in one shell command.

    A run is ``layerscope-train|eval|predict|export`` (any folder before it, e.g. ``.venv/bin/``) as a
    command word, or ``train.py|eval.py|predict.py|export.py`` after a Python interpreter or
    ``torchrun`` (``python train.py``, ``srun python train.py``, ``/usr/bin/time -f %e python
    train.py``, ``torchrun ... train.py``); its arguments run to the next ``;``, ``&&``, ``|`` or
    redirection, ``# comments`` dropped. A line the shell could not split is no command.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:
        return
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token not in OPERATORS:
            segment.append(token)
            continue
        launched = False
        for index, word in enumerate(segment):
            name = word.rsplit("/", 1)[-1]
            if re.fullmatch(r"python[\d.]*|torchrun", name):
                launched = True
            if name in PROGRAMS and (name.startswith("layerscope-") or launched):
                argv: list[str] = []
                for argument in segment[index + 1:]:
                    if REDIRECT.match(argument):
                        break
                    argv.append(argument)
                yield PROGRAMS[name], argv
                break
        segment = []


def manual_commands(root: Path) -> list[Command]:
    """Every run of an entry point in the code blocks of every page under ``root``, in page order."""
    commands: list[Command] = []
    for page in manual_pages(root):
        _, blocks = split_fences(page.read_text(encoding="utf-8"))
        for block in blocks:
            for number, text, output in block_command_lines(block):
                # The error line the manual shows the command ending in (a mistake shown on purpose).
                error = next((o.strip() for o in output if o.strip().startswith("error: ")), None)
                for config_name, argv in entry_point_runs(text):
                    commands.append(Command(page.relative_to(root).as_posix(), number, config_name,
                                            tuple(argv), text, error))
    return commands


# What a user fills in: <checkpoint>, ..., path/to/, YOUR_FOLDER, $seed or ${SEED}.
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|…|path/to/|YOUR|\$")


def fill_placeholders(argv: tuple[str, ...]) -> tuple[str, ...]:
    """``argv`` without the arguments a user must fill in (``ckpt_path=...``, ``seed=$seed``).

    Only the placeholder arguments go: the rest of the command is still checked, and a check that
    reads keys and types does not need the value (``ckpt_path=`` takes text, read only in a run).
    """
    return tuple(argument for argument in argv if not PLACEHOLDER.search(argument))


# --- Paths in inline code ------------------------------------------------------------------------

# Folders that runs fill (not the repository's files): outputs/, data/, multirun/.
RUN_OUTPUTS = {"outputs", "data", "multirun"}
# A path a user fills in: <data>, NAME, ..., $VAR, {a,b}; or an upper-case stand-in word (DATE, TIME).
PATH_PLACEHOLDER = re.compile(r"[<>$…{}]|\.\.\.|NAME|YOUR|(?<![A-Za-z])[A-Z]{3,}(?![A-Za-z.])")
LINE_SUFFIX = re.compile(r"(?::L?\d+(?:-L?\d+)?)+$")


def inline_paths(prose: str, top_level: set[str]) -> Iterator[tuple[int, str]]:
    """``(line, path)`` of each repository path named in the inline code of ``prose``.

    Counted as a path, conservatively: a code span without spaces that is a top-level entry of the
    repository (``Makefile``, ``train.py``) or starts with one and a slash (``src/...``,
    ``conf/model/*.yaml``), a leading ``./`` allowed, a trailing ``:line`` or ``#anchor`` cut off.
    Left out: run outputs (``outputs/``, ``data/``, ``multirun/``) and paths with placeholders.
    """
    for start, _, content in code_spans(prose):
        span = content.strip()
        if not span or any(ch.isspace() for ch in span):
            continue
        path = LINE_SUFFIX.sub("", span.split("#", 1)[0]).removeprefix("./")
        first = path.split("/", 1)[0]
        if first not in top_level or (path != first and not path.startswith(f"{first}/")):
            continue
        if first in RUN_OUTPUTS or PATH_PLACEHOLDER.search(path):
            continue
        yield line_of(prose, start), path


def path_exists(root: Path, path: str) -> bool:
    """Whether ``path`` (a glob where it has ``*``, ``?`` or ``[``) names something in ``root``."""
    if any(ch in path for ch in "*?["):
        return any(True for _ in root.glob(path.rstrip("/")))
    return (root / path).exists()


# --- The config-group table ------------------------------------------------------------------------

GROUP_ROW = re.compile(r"^\s*\|\s*`([\w/]+)=`\s*\|(.*)$")
CELL_SPLIT = re.compile(r"(?<!\\)\|")


def group_table_rows(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, group, names)`` of each row ``| `group=` | `a`, `b` (default) | ... |`` outside code:
    ``names`` are the code spans of the options cell (the row's second cell)."""
    prose, _ = split_fences(text)
    for number, line in enumerate(prose.splitlines(), start=1):
        row = GROUP_ROW.match(line)
        if row:
            options_cell = CELL_SPLIT.split(row.group(2))[0]
            yield number, row.group(1), [content.strip() for _, _, content in code_spans(options_cell)]


def config_groups(conf: Path) -> dict[str, set[str]]:
    """Each folder under ``conf`` that holds YAML options (``model``, ``hydra/launcher``), with the
    options (file stems) in it."""
    groups: dict[str, set[str]] = {}
    for yaml in sorted(conf.rglob("*.yaml")):
        if yaml.parent != conf:
            groups.setdefault(yaml.parent.relative_to(conf).as_posix(), set()).add(yaml.stem)
    return groups
