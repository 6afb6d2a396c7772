"""The user manual stays true: README.md, BENCHMARKS.md and every docs/**/*.md page.

Four checks, each per item so that a failure names the page, the line and the culprit:
links and anchors resolve, the commands shown compose with today's configs (through the check every
entry point runs first), the repository paths named in inline code exist, and every config group
and option is in the manual's group table. Each check also runs once on synthetic Markdown in
tmp_path, to show it catches a break. Parsing lives in tests/manual_text.py. Nothing here trains,
reaches the network or writes outside tmp_path.
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from pathlib import Path

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from layerscope.apps.cli import default_config_dir, register_resolvers
from layerscope.apps.overrides import check_command_line
from layerscope.errors import UserError
from tests.manual_text import (
    Command,
    config_groups,
    fill_placeholders,
    github_slug,
    group_table_rows,
    inline_paths,
    is_external,
    is_git_ignored,
    link_problem,
    link_targets,
    manual_commands,
    manual_pages,
    page_anchors,
    path_exists,
    rendered_heading,
    split_fences,
    top_level_entries,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = default_config_dir()  # the configs the entry points compose (src/layerscope/conf)
PAGES = manual_pages(REPO)


def relative(page: Path, root: Path = REPO) -> str:
    return page.relative_to(root).as_posix()


def test_manual_pages_are_found() -> None:
    """The manual's pages are found where the checks look (a moved README would check nothing)."""
    names = [relative(p) for p in PAGES]
    assert "README.md" in names, names
    assert all(name in ("README.md", "BENCHMARKS.md") or name.startswith("docs/") for name in names)


# --- 1. Links and anchors ------------------------------------------------------------------------


def relative_links(root: Path) -> list[tuple[Path, int, str]]:
    """Every link of the manual under ``root`` that is not to another site: (page, line, target)."""
    return [(page, line, target) for page in manual_pages(root)
            for line, target in link_targets(page.read_text(encoding="utf-8")) if not is_external(target)]


def link_problems(root: Path) -> list[str]:
    """``page:line: why`` for each broken relative link of the manual under ``root``."""
    problems = []
    for page, line, target in relative_links(root):
        why = link_problem(root, page, target)
        if why:
            problems.append(f"{relative(page, root)}:{line}: {why}")
    return problems


LINKS = relative_links(REPO)


@pytest.mark.parametrize(("page", "line", "target"), LINKS,
                         ids=[f"{relative(p)}:{n}:{t}" for p, n, t in LINKS])
def test_link_resolves(page: Path, line: int, target: str) -> None:
    """A relative link or image of the manual points at a file of the repository, and its
    ``#anchor`` at a heading (GitHub's slug) or an explicit ``<a id>`` of the page it names."""
    problem = link_problem(REPO, page, target)
    assert problem is None, f"{relative(page)}:{line}: {problem}"


def test_github_slugs() -> None:
    """Anchors are made as GitHub makes them, from headings the manual really has."""
    assert github_slug(rendered_heading("Time to accuracy: `experiment=fashion_fast`")) == (
        "time-to-accuracy-experimentfashion_fast")
    assert github_slug(rendered_heading("The default run (`python train.py model=deep`)")) == (
        "the-default-run-python-trainpy-modeldeep")
    assert github_slug(rendered_heading("Precision chosen by the hardware (`trainer.precision=auto`)")) == (
        "precision-chosen-by-the-hardware-trainerprecisionauto")
    assert github_slug(rendered_heading("Switch it, *tune* it: [links](x.md) & _more_ ")) == (
        "switch-it-tune-it-links--more")
    text = "# Notes\n## Notes\n## Notes\nSetext\n---\n```\n# not a heading\n```\n<a id=\"kept\"></a>\n"
    assert page_anchors(text) == {"notes", "notes-1", "notes-2", "setext", "kept"}


def test_link_check_catches_broken_links(tmp_path: Path) -> None:
    """The link check fails a missing file, a missing image, an anchor no heading has (on another
    page and on the page itself), and leaves code and other sites alone."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "pic.png").write_bytes(b"")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Real heading\n\n<a name=\"custom\"></a>\n")
    (tmp_path / "README.md").write_text(textwrap.dedent("""\
        # Top

        Fine: [guide](docs/guide.md), [part](docs/guide.md#real-heading), [mark](docs/guide.md#custom),
        [here](#top), ![pic](pic.png), [site](https://example.com/x.md), [mail](mailto:a@b.c).
        Broken: [gone](docs/missing.md), [anchor](docs/guide.md#no-such-heading) and [self](#nowhere),
        ![image](gone.png) and <img src="also_gone.png" width="10">.
        Not links: `[code](nope.md)` and

        ```bash
        echo "[fenced](nope2.md)"
        ```
        """))
    problems = link_problems(tmp_path)
    assert len(problems) == 5, problems
    for culprit in ("docs/missing.md", "#no-such-heading", "#nowhere", "gone.png", "also_gone.png"):
        assert any(culprit in p for p in problems), (culprit, problems)
    assert all(p.startswith(("README.md:5:", "README.md:6:")) for p in problems), problems


# --- 2. Commands -----------------------------------------------------------------------------------


def command_problem(config_dir: Path, config_name: str, argv: tuple[str, ...]) -> str | None:
    """Why ``argv`` would stop the entry point of ``config_name`` before it runs, or None.

    First the check every entry point runs (``check_command_line``: group options, keys, value
    types), then Hydra's own argument and override parsers, which the check leaves to Hydra.
    """
    register_resolvers()  # as run_hydra does before the check
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            check_command_line(config_dir, config_name, list(argv))
            args = get_args_parser().parse_args(list(argv))
    except UserError as err:
        return f"error: {err}"
    except SystemExit:
        return f"Hydra's argument parser refuses it: {stderr.getvalue().strip().splitlines()[-1:]}"
    try:
        OverridesParser.create().parse_overrides(args.overrides)
    except HydraException as err:
        return f"Hydra cannot parse its overrides: {str(err).splitlines()[0]}"
    return None


def shown_problem(config_dir: Path, command: Command) -> str | None:
    """What is wrong with a command the manual shows, or None.

    A command shown without an error must pass; one the manual shows ending in ``error: ...`` (a
    mistake shown on purpose) must end in that very line where the check catches it. Where the
    check lets it through, its error comes later in the run, which no test here starts.
    """
    problem = command_problem(config_dir, command.config_name, fill_placeholders(command.argv))
    if command.shown_error is None or problem is None:
        return problem
    if problem != command.shown_error:
        return f"the manual shows\n  {command.shown_error}\nbut it prints\n  {problem}"
    return None


CommandKey = tuple[str, tuple[str, ...], str | None]


def distinct_commands(commands: list[Command]) -> dict[CommandKey, list[Command]]:
    """The manual's commands by what gets checked (config, argv less placeholders, the error shown),
    each with every place it is shown: a command repeated on many pages is composed once."""
    distinct: dict[CommandKey, list[Command]] = {}
    for command in commands:
        key = (command.config_name, fill_placeholders(command.argv), command.shown_error)
        distinct.setdefault(key, []).append(command)
    return distinct


MANUAL_COMMANDS = distinct_commands(manual_commands(REPO))


@pytest.mark.parametrize(
    "key", list(MANUAL_COMMANDS),
    ids=[f"{shown[0].page}:{shown[0].line}:{name} {' '.join(argv)}"
         for (name, argv, _), shown in MANUAL_COMMANDS.items()])
def test_command_composes(key: CommandKey) -> None:
    """A command of the manual's code blocks (``python train.py ...``, ``layerscope-eval ...``)
    passes the check its entry point runs before anything else, against today's configs.

    Arguments a user fills in (``ckpt_path=...``, ``seed=$seed``) are left out and the rest is
    checked; ``ckpt_path=`` and ``input=`` values are only type-checked, so a file that does not
    exist here is fine. Hydra's own flags (``--cfg job``, ``-m``) go to the check as they are. A
    command shown ending in ``error: ...`` must print that line if the check stops it.
    """
    shown = MANUAL_COMMANDS[key]
    argv = key[1]
    places = ", ".join(f"{c.page}:{c.line}" for c in shown)
    if {"--config-dir", "-cd"} & set(argv):
        folder = argv[[a in ("--config-dir", "-cd") for a in argv].index(True) + 1]
        if not (REPO / folder).is_dir():
            # A folder of the user's own configs (my_configs/model/tiny.yaml): its options are not here.
            pytest.skip(f"{places}: --config-dir {folder} is a folder the user makes")
    problem = shown_problem(CONFIG_DIR, shown[0])
    assert problem is None, f"{places}: {shown[0].text}\n  {problem}"


def test_commands_are_found() -> None:
    """The command extraction still finds the manual's commands (an empty list would check none)."""
    assert any(c.config_name == "train" for cs in MANUAL_COMMANDS.values() for c in cs), MANUAL_COMMANDS


def test_command_check_catches_stale_commands(tmp_path: Path) -> None:
    """The command check finds commands the way the manual shows them (prompts, ``\\`` continuations,
    comments, ``.venv/bin/``, launchers), skips program output and placeholders, and fails an
    option or a key that today's configs do not have and a value of the wrong type."""
    (tmp_path / "README.md").write_text(textwrap.dedent("""\
        ```bash
        python train.py model=nosuchmodel   # an option that is gone
        .venv/bin/layerscope-train model=deep \\
            model.nosuchkey=3
        srun python train.py trainer.max_epochs=abc && echo done
        python eval.py ckpt_path=... data=fashion_mnist  # the placeholder is left out
        python train.py --cfg job
        cat train.py
        ```

        ```
        $ python predict.py ckpt_path=<checkpoint> input=photo.png top_k=2
        python train.py model=nosuchmodel: printed by a program, not a command
        $ python train.py model=nosuchmodel
        error: model=nosuchmodel is not an option: choose one of deep, mlp
        $ python train.py data=imagefolder
        error: data.root is not set: pass data.root=... on the command line
        ```
        """))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("~~~sh\nlayerscope-export ckpt_path=x.ckpt format=onnx\n~~~\n")
    commands = manual_commands(tmp_path)
    assert [(c.page, c.line, c.config_name) for c in commands] == [
        ("README.md", 2, "train"), ("README.md", 3, "train"), ("README.md", 5, "train"),
        ("README.md", 6, "eval"), ("README.md", 7, "train"), ("README.md", 12, "predict"),
        ("README.md", 14, "train"), ("README.md", 16, "train"), ("docs/page.md", 2, "export")]
    assert commands[1].argv == ("model=deep", "model.nosuchkey=3")
    assert commands[2].argv == ("trainer.max_epochs=abc",)
    assert fill_placeholders(commands[3].argv) == ("data=fashion_mnist",)
    assert fill_placeholders(commands[5].argv) == ("input=photo.png", "top_k=2")
    assert [c.shown_error for c in commands[-3:-1]] == [
        "error: model=nosuchmodel is not an option: choose one of deep, mlp",
        "error: data.root is not set: pass data.root=... on the command line"]
    problems = {(c.page, c.line): shown_problem(CONFIG_DIR, c) for c in commands}
    # The error shown is not the one printed (the options have changed since).
    assert "but it prints\n  error: model=nosuchmodel is not an option: choose one of deep, fast" in str(
        problems.pop(("README.md", 14)))
    assert "model=nosuchmodel is not an option" in str(problems.pop(("README.md", 2)))
    assert "model.nosuchkey is not a key" in str(problems.pop(("README.md", 3)))
    assert "trainer.max_epochs=abc is not an integer" in str(problems.pop(("README.md", 5)))
    assert set(problems.values()) == {None}, problems
    assert command_problem(CONFIG_DIR, "train", ("--no-such-flag",)) is not None
    assert command_problem(CONFIG_DIR, "train", ("model=deep", "seed=1=2=(")) is not None


# --- 3. Paths named in inline code -----------------------------------------------------------------

TOP_LEVEL = top_level_entries(REPO)


def named_paths(root: Path, top_level: set[str]) -> list[tuple[Path, int, str]]:
    """Every repository path the prose of the manual under ``root`` names in inline code."""
    found = []
    for page in manual_pages(root):
        prose, _ = split_fences(page.read_text(encoding="utf-8"))
        found += [(page, line, path) for line, path in inline_paths(prose, top_level)]
    return found


def path_problem(root: Path, path: str) -> str | None:
    if not path_exists(root, path):
        return "matches nothing" if any(ch in path for ch in "*?[") else "does not exist"
    if not any(ch in path for ch in "*?[") and is_git_ignored(root, root / path):
        return "exists only here: git ignores it"
    return None


NAMED_PATHS = named_paths(REPO, TOP_LEVEL)


@pytest.mark.parametrize(("page", "line", "path"), NAMED_PATHS,
                         ids=[f"{relative(p)}:{n}:{path}" for p, n, path in NAMED_PATHS])
def test_named_path_exists(page: Path, line: int, path: str) -> None:
    """A repository path in the manual's inline code (``src/layerscope/insight/``,
    ``conf/model/*.yaml``, ``benchmarks/run_breakdown.py``) exists in the repository (a glob
    matches something)."""
    problem = path_problem(REPO, path)
    assert problem is None, f"{relative(page)}:{line}: `{path}` {problem}"


def test_path_check_catches_missing_paths(tmp_path: Path) -> None:
    """The path check fails a path that is gone and a glob that matches nothing, and counts only
    code spans that start at a top-level entry, without run outputs or placeholders."""
    (tmp_path / "src" / "layerscope").mkdir(parents=True)
    (tmp_path / "src" / "layerscope" / "real.py").write_text("")
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "deep.yaml").write_text("")
    (tmp_path / "README.md").write_text(textwrap.dedent("""\
        Real: `src/layerscope/real.py:12`, `./src/layerscope/`, `conf/model/*.yaml`, `README.md`.
        Gone: `src/layerscope/nosuch.py` and `conf/trainer/*.yaml`, and one `src/layerscope/moved.py#L3`.
        Not paths: `outputs/2026-01-01/run`, `conf/<group>/NAME.yaml`, `model=deep`, `layerscope/x.py`,
        `python src/layerscope/gone.py`, and in a block:

        ```
        src/layerscope/in_block.py
        ```
        """))
    top_level = {"src", "conf", "outputs", "README.md"}
    found = named_paths(tmp_path, top_level)
    assert [path for _, _, path in found] == [
        "src/layerscope/real.py", "src/layerscope/", "conf/model/*.yaml", "README.md",
        "src/layerscope/nosuch.py", "conf/trainer/*.yaml", "src/layerscope/moved.py"]
    problems = {path: path_problem(tmp_path, path) for _, _, path in found}
    assert {path for path, problem in problems.items() if problem} == {
        "src/layerscope/nosuch.py", "conf/trainer/*.yaml", "src/layerscope/moved.py"}, problems


# --- 4. Config groups in the group table ---------------------------------------------------------

# Groups below conf/hydra/ are Hydra's own (hydra/launcher=slurm, picked with a slash, beside the
# options of Hydra's plugins); the table is of layerscope's groups. They are checked below instead:
# each option must be named, as hydra/launcher=OPTION, somewhere in the manual.
HYDRA_GROUPS = "hydra/"
GROUPS = config_groups(CONFIG_DIR)


def documented_options(root: Path) -> dict[str, set[str]]:
    """The options each ``| `group=` |`` row of the manual under ``root`` lists (rows on several
    pages add up)."""
    documented: dict[str, set[str]] = {}
    for page in manual_pages(root):
        for _, group, names in group_table_rows(page.read_text(encoding="utf-8")):
            documented.setdefault(group, set()).update(names)
    return documented


def undocumented(groups: dict[str, set[str]], documented: dict[str, set[str]]) -> dict[str, set[str]]:
    """The options of each group that the table leaves out: all of them where it has no row."""
    return {group: options - documented.get(group, set()) for group, options in groups.items()
            if options - documented.get(group, set())}


DOCUMENTED = documented_options(REPO)


def known_options(group: str) -> set[str]:
    """The options of ``group``: the YAML files of conf/, and for a Hydra group also those of
    Hydra and its plugins (``hydra/launcher=submitit_local``), asked of Hydra's loader over the
    search path the entry points use, as the command-line check asks it."""
    options = set(GROUPS.get(group, set()))
    if group.startswith(HYDRA_GROUPS):
        loader = ConfigLoaderImpl(create_config_search_path(str(CONFIG_DIR)))
        options |= set(loader.get_group_options(group, config_name="train", overrides=[]))
    return options


@pytest.mark.parametrize("group", sorted(g for g in GROUPS if not g.startswith(HYDRA_GROUPS)))
def test_config_group_is_in_the_table(group: str) -> None:
    """Every config group under conf/ has a row ``| `group=` | ... |`` in the manual's group table
    (README.md or docs/), and the row lists every option of the group in backticks."""
    rows = [f"{relative(page)}:{line}" for page in PAGES
            for line, name, _ in group_table_rows(page.read_text(encoding="utf-8")) if name == group]
    assert rows, f"no `{group}=` row in the group table of {', '.join(relative(p) for p in PAGES)}"
    missing = undocumented({group: GROUPS[group]}, DOCUMENTED).get(group, set())
    assert not missing, f"the `{group}=` row ({', '.join(rows)}) leaves out {', '.join(sorted(missing))}"


ROWS = [(page, line, group, names) for page in PAGES
        for line, group, names in group_table_rows(page.read_text(encoding="utf-8"))]


@pytest.mark.parametrize(("page", "line", "group", "names"), ROWS,
                         ids=[f"{relative(p)}:{n}:{g}=" for p, n, g, _ in ROWS])
def test_group_table_row_names_real_options(page: Path, line: int, group: str, names: list[str]) -> None:
    """A row of the group table names a group that exists and only options it has (a plain word in
    backticks in the options cell; ``data=shapes model=deep`` and the like are prose)."""
    assert group in GROUPS, f"{relative(page)}:{line}: `{group}=` is no config group: {sorted(GROUPS)}"
    options = [name for name in names if name.replace("_", "").isalnum()]
    stale = sorted(set(options) - known_options(group))
    assert not stale, f"{relative(page)}:{line}: `{group}=` lists {stale}, not options of conf/{group}/"


@pytest.mark.parametrize("group", sorted(g for g in GROUPS if g.startswith(HYDRA_GROUPS)))
def test_hydra_group_options_are_named(group: str) -> None:
    """Each option layerscope ships for a Hydra group (``hydra/launcher=slurm``) is named in the manual."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    missing = sorted(option for option in GROUPS[group] if f"{group}={option}" not in text)
    assert not missing, f"{', '.join(f'{group}={m}' for m in missing)} is in conf/ but not in the manual"


def test_group_check_catches_undocumented_options(tmp_path: Path) -> None:
    """The group check fails an option the table leaves out and a group with no row."""
    for name in ("model/deep", "model/tiny", "paths/default", "hydra/launcher/slurm"):
        (tmp_path / "conf" / f"{name}.yaml").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / f"{name}.yaml").write_text("{}\n")
    (tmp_path / "README.md").write_text(textwrap.dedent("""\
        | group | options | what it picks |
        | --- | --- | --- |
        | `model=` | `deep` (default), picked with `data=shapes model=deep` | the network |

        ```
        | `paths=` | `default` | inside a code block: no row |
        ```
        """))
    groups = config_groups(tmp_path / "conf")
    assert groups == {"model": {"deep", "tiny"}, "paths": {"default"}, "hydra/launcher": {"slurm"}}
    documented = documented_options(tmp_path)
    assert documented == {"model": {"deep", "data=shapes model=deep"}}
    assert undocumented(groups, documented) == {
        "model": {"tiny"}, "paths": {"default"}, "hydra/launcher": {"slurm"}}
