"""The plugin manager and registries: loading, entry points, environment switches, every error.

Third-party plugins are simulated with fake distributions (a ``*.dist-info`` folder with
``METADATA`` and ``entry_points.txt`` next to a module) on a temporary ``sys.path`` entry, which
is exactly what ``importlib.metadata`` sees for an installed package.
"""

from __future__ import annotations

import enum
import importlib
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pluggy
import pytest

import irlm_env
from irlm_env import IrlmError, hookimpl, plugins
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.corpora import CorpusSource
from irlm_env.corpora.registry import corpus_registry, make_corpus_source
from irlm_env.rewards import make_reward
from irlm_env.rewards.registry import reward_registry
from irlm_env.options import bind_options
from irlm_env.plugins import PluginWarning

MakeDist = Callable[..., None]

REWARD_PLUGIN = """
from irlm_env import hookimpl
from irlm_env.rewards import Reward

class Half(Reward):
    def __init__(self, corpus, value: float = 0.5):
        self.value = value
    def __call__(self, action, target, context):
        return 1.0 if action == target else self.value

@hookimpl
def irlm_register_rewards(register):
    register({name!r}, Half, "half credit for misses")
"""


class Color(enum.IntEnum):
    """An option type built on int that reads its own names."""

    RED = 1


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(plugins.LOAD_ENV, raising=False)
    monkeypatch.delenv(plugins.STRICT_ENV, raising=False)
    plugins.reset_plugins()
    yield
    plugins.reset_plugins()


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """Create an installed-looking distribution whose entry points are in group irlm_env."""
    monkeypatch.syspath_prepend(str(tmp_path))
    modules: list[str] = []

    def make(dist: str, entry_points: dict[str, str], sources: dict[str, str], version: str = "1.0") -> None:
        # Installers write the folder name with underscores; importlib.metadata relies on it.
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[irlm_env]\n{lines}")
        for module, source in sources.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        importlib.invalidate_caches()

    yield make
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus("grammar", n_sentences=300)


def _info(name: str) -> plugins.PluginInfo:
    return next(info for info in plugins.plugin_report() if info.name == name)


def test_builtins_load_first_and_register_through_the_hooks() -> None:
    report = plugins.plugin_report()
    assert {(i.name, i.kind, i.error) for i in report[:2]} == {
        ("irlm_env.rewards.exact", "builtin", None),
        ("irlm_env.corpora.builtin", "builtin", None),
    }
    assert reward_registry().get("exact").plugin_name == "irlm_env.rewards.exact"
    assert {"pydocs", "grammar", "text"} <= set(corpus_registry().names())
    assert plugins.get_plugin_manager() is plugins.get_plugin_manager()


def test_reset_builds_a_new_manager() -> None:
    first = plugins.get_plugin_manager()
    plugins.reset_plugins()
    assert plugins.get_plugin_manager() is not first


@pytest.mark.parametrize(("kind", "typo", "closest"), [("reward", "exakt", "exact"), ("corpus", "gramar", "grammar")])
def test_unknown_name_lists_available_and_suggests(kind: str, typo: str, closest: str) -> None:
    registry = reward_registry() if kind == "reward" else corpus_registry()
    with pytest.raises(IrlmError, match=rf"unknown {kind} '{typo}'; did you mean '{closest}'\? available: .*{closest}"):
        registry.get(typo)


def test_unknown_names_through_the_public_entry_points(corpus: Corpus) -> None:
    with pytest.raises(IrlmError, match="did you mean 'exact'"):
        make_reward("exac", corpus)
    with pytest.raises(IrlmError, match="did you mean 'pydocs'"):
        load_corpus("pydoc")


def test_entry_point_plugin_is_found_with_its_version(make_dist: MakeDist, corpus: Corpus) -> None:
    make_dist("irlm-half", {"half": "fake_half"}, {"fake_half": REWARD_PLUGIN.format(name="half")}, version="2.3.1")
    info = _info("half")
    assert (info.kind, info.distribution, info.version, info.error) == ("entrypoint", "irlm-half", "2.3.1", None)
    entry = reward_registry().get("half")
    assert (entry.plugin_name, entry.plugin_version, entry.description) == ("half", "2.3.1", "half credit for misses")
    reward = make_reward("half", corpus, value="0.25")  # strings from a command line are converted
    assert reward(3, 3, np.zeros(4, np.int64)) == 1.0
    assert reward(3, 4, np.zeros(4, np.int64)) == 0.25
    assert reward.batch(np.array([[3, 4]]), np.array([3]), np.zeros((1, 4), np.int64)).tolist() == [[1.0, 0.25]]
    assert not reward.has_table and reward.table(np.array([3]), np.zeros((1, 4), np.int64)) is None


def test_same_name_from_builtin_and_plugin_names_both(make_dist: MakeDist, corpus: Corpus) -> None:
    make_dist("irlm-clash", {"clash": "fake_clash"}, {"fake_clash": REWARD_PLUGIN.format(name="exact")})
    with pytest.raises(IrlmError, match=r"reward 'exact' is registered by 2 plugins: 'irlm_env.rewards.exact' and 'clash'"):
        make_reward("exact", corpus)


def test_a_clash_breaks_only_its_own_name(make_dist: MakeDist, corpus: Corpus) -> None:
    """Other names, the built-in default included, still work, and listings show both claimants."""
    make_dist("irlm-one", {"one": "fake_one"}, {"fake_one": REWARD_PLUGIN.format(name="dup")})
    make_dist("irlm-two", {"two": "fake_two"}, {"fake_two": REWARD_PLUGIN.format(name="dup")})
    registry = reward_registry()
    with pytest.raises(IrlmError, match=r"'dup' is registered by 2 plugins: 'one' and 'two'.*IRLM_LOAD_PLUGINS"):
        registry.get("dup")
    assert "dup" in registry and registry.names().count("dup") == 1
    assert [e.plugin_name for e in registry.entries() if e.name == "dup"] == ["one", "two"]
    assert make_reward("exact", corpus)(3, 3, np.zeros(4, np.int64)) == 1.0


def test_import_failure_warns_with_plugin_and_exception_and_others_load(make_dist: MakeDist) -> None:
    make_dist("irlm-broken", {"broken": "fake_broken"}, {"fake_broken": "import no_such_module_xyz\n"}, version="0.3")
    make_dist("irlm-fine", {"fine": "fake_fine"}, {"fake_fine": REWARD_PLUGIN.format(name="fine")})
    with pytest.warns(PluginWarning, match=r"'broken' \(distribution irlm-broken 0.3\) failed to import.*ModuleNotFoundError.*no_such_module_xyz"):
        names = reward_registry().names()
    assert "fine" in names
    assert "no_such_module_xyz" in (_info("broken").error or "")
    assert _info("fine").error is None
    # A name the broken plugin might have provided points at the failure.
    with pytest.raises(IrlmError, match="Some plugins failed to load.*'broken'"):
        reward_registry().get("nothing-like-this")


def test_a_plugin_calling_exit_at_import_is_skipped_not_the_process(make_dist: MakeDist) -> None:
    make_dist("irlm-exits", {"exits": "fake_exits"}, {"fake_exits": "import sys\nsys.exit(3)\n"})
    with pytest.warns(PluginWarning, match=r"'exits' .*failed to import.*SystemExit: 3"):
        assert "exact" in reward_registry().names()


def test_a_plugin_using_the_plugins_while_they_load_is_skipped_with_the_reason(make_dist: MakeDist) -> None:
    module = "from irlm_env import plugins\nplugins.register_plugin(object(), 'early')\n" + REWARD_PLUGIN.format(name="selfreg")
    make_dist("irlm-selfreg", {"selfreg": "fake_selfreg"}, {"fake_selfreg": module})
    with pytest.warns(PluginWarning, match=r"'selfreg' .*failed to import.*used while they were being loaded"):
        names = reward_registry().names()
    assert "exact" in names and "selfreg" not in names


def test_threads_using_the_plugins_at_once_all_get_them() -> None:
    """The first use from several threads: none is refused (only code run by the load itself is),
    and all end up with the one manager kept."""
    for _ in range(10):
        plugins.reset_plugins()
        managers: list[object] = []
        errors: list[BaseException] = []

        def use() -> None:
            try:
                reward_registry().get("exact")
                managers.append(plugins.get_plugin_manager())
            except BaseException as error:  # noqa: BLE001 - collected for the assertion below
                errors.append(error)

        threads = [threading.Thread(target=use) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and len(managers) == 4
        assert all(manager is plugins.get_plugin_manager() for manager in managers)


def test_strict_mode_makes_import_failure_fatal(make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist("irlm-broken", {"broken": "fake_broken2"}, {"fake_broken2": "raise RuntimeError('boom')\n"})
    monkeypatch.setenv(plugins.STRICT_ENV, "1")
    with pytest.raises(IrlmError, match=r"'broken' .*failed to import.*RuntimeError: boom.*IRLM_STRICT_PLUGINS=1"):
        plugins.get_plugin_manager()


def test_empty_load_plugins_disables_third_party(make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist("irlm-off", {"off": "fake_off"}, {"fake_off": REWARD_PLUGIN.format(name="off")})
    monkeypatch.setenv(plugins.LOAD_ENV, "")
    assert {info.kind for info in plugins.plugin_report()} == {"builtin"}
    assert "off" not in reward_registry()
    assert "exact" in reward_registry()


def test_load_plugins_allow_list_by_entry_point_or_distribution(
    make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dist("irlm-aa", {"aa": "fake_aa"}, {"fake_aa": REWARD_PLUGIN.format(name="aa")})
    make_dist("irlm-bb", {"bb": "fake_bb"}, {"fake_bb": REWARD_PLUGIN.format(name="bb")})
    make_dist("irlm-cc", {"cc": "fake_cc"}, {"fake_cc": REWARD_PLUGIN.format(name="cc")})
    monkeypatch.setenv(plugins.LOAD_ENV, "aa, irlm-bb")
    names = reward_registry().names()
    assert "aa" in names and "bb" in names and "cc" not in names
    # distribution names compare as pip compares them; entry-point names as written
    monkeypatch.setenv(plugins.LOAD_ENV, "AA")
    plugins.reset_plugins()
    with pytest.warns(PluginWarning, match="names plugin 'AA', which is not installed"):
        assert "aa" not in reward_registry().names()
    monkeypatch.setenv(plugins.LOAD_ENV, "IRLM_CC")
    plugins.reset_plugins()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not installed" warning either
        names = reward_registry().names()
    assert "cc" in names and "aa" not in names


def test_load_plugins_naming_a_missing_plugin_warns(make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist("irlm-aa", {"aa": "fake_aa2"}, {"fake_aa2": REWARD_PLUGIN.format(name="aa")})
    monkeypatch.setenv(plugins.LOAD_ENV, "ab")
    with pytest.warns(PluginWarning, match=r"IRLM_LOAD_PLUGINS names plugin 'ab', which is not installed; did you mean 'aa'"):
        plugins.get_plugin_manager()


WRONG_ARGS = """
from irlm_env import hookimpl

@hookimpl
def irlm_register_rewards(registry):
    registry("never", object)
"""


def test_wrong_hookimpl_argument_names_are_reported_with_the_plugin(make_dist: MakeDist) -> None:
    make_dist("irlm-wrongargs", {"wrongargs": "fake_wrongargs"}, {"fake_wrongargs": WRONG_ARGS})
    with pytest.warns(PluginWarning, match=r"'wrongargs' \(distribution irlm-wrongargs 1.0\) has an invalid hook implementation.*registry"):
        names = reward_registry().names()
    assert "never" not in names
    assert "registry" in (_info("wrongargs").error or "")


def test_wrong_hookimpl_argument_names_fatal_when_strict(make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist("irlm-wrongargs", {"wrongargs": "fake_wrongargs2"}, {"fake_wrongargs2": WRONG_ARGS})
    monkeypatch.setenv(plugins.STRICT_ENV, "1")
    with pytest.raises(IrlmError, match="'wrongargs'.*invalid hook implementation"):
        plugins.get_plugin_manager()


def test_misspelled_hook_is_reported_with_the_plugin(make_dist: MakeDist) -> None:
    source = "from irlm_env import hookimpl\n\n@hookimpl\ndef irlm_register_reward(register):\n    pass\n"
    make_dist("irlm-typo", {"typo": "fake_typo"}, {"fake_typo": source})
    with pytest.warns(PluginWarning, match=r"'typo'.*unknown hook\(s\) irlm_register_reward"):
        plugins.get_plugin_manager().check_pending()


def test_register_plugin_reports_wrong_argument_names_at_once() -> None:
    class Wrong:
        @hookimpl
        def irlm_register_corpora(self, regster: object) -> None: ...

    with pytest.raises(IrlmError, match="plugin 'mine' has an invalid hook implementation.*regster"):
        plugins.register_plugin(Wrong(), "mine")


def test_register_plugin_refuses_a_wrapper_hook_that_would_register_nothing() -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def irlm_register_rewards(self, register: Callable[..., None]) -> object:
            register("wrapped", lambda corpus: None)
            return (yield)

    with pytest.raises(IrlmError, match="plugin 'wrapping' marks irlm_register_rewards as a wrapper hook"):
        plugins.register_plugin(Wrapping(), "wrapping")
    assert "wrapped" not in reward_registry()


def test_one_plugin_registering_a_name_from_two_hook_functions_is_refused() -> None:
    def first(register: Callable[..., None]) -> None:
        register("same", _reward)

    class Twice:
        one = staticmethod(hookimpl(specname="irlm_register_rewards")(first))
        two = staticmethod(hookimpl(specname="irlm_register_rewards")(first))

    with pytest.raises(IrlmError, match="plugin 'twice' registers reward 'same' twice"):
        plugins.register_plugin(Twice(), "twice")


def _plugin_registering(*args: object, hook: str = "irlm_register_rewards") -> object:
    def register_all(register: Callable[..., None]) -> None:
        register(*args)

    class Plugin:
        pass

    setattr(Plugin, hook, staticmethod(hookimpl(specname=hook)(register_all)))
    return Plugin()


def _reward(corpus: object) -> object:
    return lambda action, target, context: 0.0


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("", _reward), "a name must be a string"),
        (("Bad Name", _reward), "a name must be a string"),
        ((3, _reward), "a name must be a string"),
        (("fine", "not callable"), "not callable"),
        (("fine", _reward, 7), "description that is not a string"),
        (("fine", lambda: None), "no positional corpus argument"),
    ],
)
def test_register_callback_validates_immediately(args: tuple[object, ...], problem: str) -> None:
    with pytest.raises(IrlmError, match=rf"plugin 'checked' registers .*{problem}"):
        plugins.register_plugin(_plugin_registering(*args), "checked")
    assert "checked" not in {info.name for info in plugins.plugin_report()}
    assert "exact" in reward_registry()


def test_corpus_factory_with_positional_only_parameter_is_rejected() -> None:
    def factory(path: str, /) -> None: ...

    with pytest.raises(IrlmError, match="'posonly'.*positional-only"):
        plugins.register_plugin(_plugin_registering("posonly", factory, hook="irlm_register_corpora"), "posonly")


def test_exception_in_a_registration_hook_names_the_plugin() -> None:
    class Crashing:
        @hookimpl
        def irlm_register_rewards(self, register: object) -> None:
            raise KeyError("oops")

    with pytest.raises(IrlmError, match="plugin 'crashing' failed in its irlm_register_rewards hook: KeyError"):
        plugins.register_plugin(Crashing(), "crashing")


def test_registering_a_run_time_plugin_again_replaces_it_and_a_refused_one_keeps_the_old() -> None:
    def version(value: float) -> object:
        class Cell:  # a notebook cell, run again after an edit
            @hookimpl
            def irlm_register_rewards(self, register: Callable[..., None]) -> None:
                register("cell-reward", lambda corpus: (lambda action, target, context: value))
        return Cell()

    corpus = load_corpus("grammar")
    context = np.zeros(1, np.int64)
    plugins.register_plugin(version(0.25), "cell")
    assert make_reward("cell-reward", corpus)(0, 1, context) == 0.25
    plugins.register_plugin(version(0.75), "cell")
    assert make_reward("cell-reward", corpus)(0, 1, context) == 0.75
    with pytest.raises(IrlmError, match="plugin 'cell' implements no irlm_env hook"):
        plugins.register_plugin(object(), "cell")
    assert make_reward("cell-reward", corpus)(0, 1, context) == 0.75


def test_register_plugin_refuses_a_taken_name() -> None:
    with pytest.raises(IrlmError, match="'irlm_env.rewards.exact' is already loaded"):
        plugins.register_plugin(object(), "irlm_env.rewards.exact")


@pytest.mark.parametrize("plugin", [object(), None, "irlm_similarity"], ids=["object", "none", "string"])
def test_register_plugin_refuses_a_plugin_with_no_hook(plugin: object) -> None:
    with pytest.raises(IrlmError, match=r"plugin 'empty' implements no irlm_env hook.*@irlm_env.hookimpl"):
        plugins.register_plugin(plugin, "empty")
    assert "empty" not in {info.name for info in plugins.plugin_report()}


def test_register_plugin_refuses_a_marker_of_another_project() -> None:
    class Unmarked:
        @pluggy.HookimplMarker("irlm")  # not irlm_env's marker: pluggy sees no hook
        def irlm_register_rewards(self, register: Callable[..., None]) -> None:
            register("nomark", _reward)

    with pytest.raises(IrlmError, match="plugin 'unmarked' implements no irlm_env hook"):
        plugins.register_plugin(Unmarked(), "unmarked")


@pytest.mark.parametrize("name", ["exact", "half"])
def test_register_plugin_refuses_a_name_another_plugin_registers(name: str, corpus: Corpus) -> None:
    plugins.register_plugin(_plugin_registering("half", _reward), "first")
    with pytest.raises(IrlmError, match=rf"plugin 'second' registers reward '{name}', which plugin '.*' already "
                                        r"registers\. Choose another name"):
        plugins.register_plugin(_plugin_registering(name, _reward), "second")
    # Nothing of the refused plugin is kept, and every reward still resolves.
    assert "second" not in {info.name for info in plugins.plugin_report()}
    assert reward_registry().get("half").plugin_name == "first"
    assert make_reward("exact", corpus)(3, 3, np.zeros(4, np.int64)) == 1.0


def test_reward_options_are_checked_against_the_factory(corpus: Corpus) -> None:
    class Needs:
        def __init__(self, corpus: Corpus, *, level: int, strict: bool = False, scale: float = 1.0) -> None:
            self.level, self.strict = level, strict

        def __call__(self, action: int, target: int, context: np.ndarray) -> float:
            return float(self.level)

    plugins.register_plugin(_plugin_registering("needs", Needs), "needs")
    with pytest.raises(IrlmError, match=r"has no option 'levle'; did you mean 'level'\? available: level, scale, strict"):
        make_reward("needs", corpus, levle=1)
    with pytest.raises(IrlmError, match=r"requires the option\(s\) level"):
        make_reward("needs", corpus)
    with pytest.raises(IrlmError, match=r"option level='high' must be of type int"):
        make_reward("needs", corpus, level="high")
    with pytest.raises(IrlmError, match=r"option scale='nan' must be a finite number"):
        make_reward("needs", corpus, level=1, scale="nan")
    # text stays text where the factory takes text, and 'none' is None where it takes None
    def typed(corpus: Corpus, path: str = "", limit: int | None = 3) -> None: ...

    assert bind_options("x", typed, {"path": "2024", "limit": "none"}, skip=1) == {"path": "2024", "limit": None}
    # without an annotation a number looks like one, NaN stays text
    assert bind_options("x", lambda corpus, n=1: None, {"n": "3"}, skip=1) == {"n": 3}
    assert bind_options("x", lambda corpus, n=1: None, {"n": "NaN"}, skip=1) == {"n": "NaN"}

    def unions(corpus: Corpus, a: int | float = 1, b: bool | int = 1, d: Any = 1, e: Real = 1,
               g: float | str = 1, h: str | None = None, p: Path = Path(".")) -> None: ...

    # each allowed type is tried in turn; Any and numbers.Real take a number; text where str is
    # allowed (after None); another class gets the text
    given = {"a": "0.5", "b": "3", "d": "2", "e": "0.5", "g": "0.5", "h": "none", "p": "2024"}
    assert bind_options("x", unions, given, skip=1) == {
        "a": 0.5, "b": 3, "d": 2, "e": 0.5, "g": "0.5", "h": None, "p": "2024"}
    with pytest.raises(IrlmError, match=r"option a='x' must be of type int or float"):
        bind_options("x", unions, {"a": "x"}, skip=1)

    def more(corpus: Corpus, b: bool | int = 1, r: Real | None = None, i: Integral = 1,
             q: int | Path = 1) -> None: ...

    # where a number is allowed, '1' is the number and only a word is a bool; a number type
    # refuses text it cannot read; text no number reads goes to the other class of the union
    assert bind_options("x", more, {"b": "1", "r": "0.5", "q": "data.txt"}, skip=1) == {
        "b": 1, "r": 0.5, "q": "data.txt"}
    assert bind_options("x", more, {"b": "yes", "r": "none", "q": "4"}, skip=1) == {"b": True, "r": None, "q": 4}
    for option, text, problem in (("r", "true", "must be of type float"), ("r", "nan", "must be a finite number"),
                                  ("i", "2.5", "must be of type int")):
        with pytest.raises(IrlmError, match=rf"option {option}='{text}' {problem}"):
            bind_options("x", more, {option: text}, skip=1)

    # classes built on numbers read text their own way: it reaches them unconverted
    def own(corpus: Corpus, color: Color = Color.RED, share: Fraction = Fraction(1)) -> None: ...

    assert bind_options("x", own, {"color": "RED", "share": "1/3"}, skip=1) == {"color": "RED", "share": "1/3"}
    reward = make_reward("needs", corpus, level="3", strict="yes")
    assert (reward.inner.level, reward.inner.strict) == (3, True)
    assert reward(0, 1, np.zeros(2, np.int64)) == 3.0


def test_option_values_of_the_wrong_type_name_the_option(corpus: Corpus) -> None:
    class Typed:
        def __init__(self, corpus: Corpus, credit: float = 0.5, limit: int | None = None,
                     tags: list[str] | None = None) -> None:
            self.credit, self.limit, self.tags = credit, limit, tags

        def __call__(self, action: int, target: int, context: np.ndarray) -> float:
            return self.credit

    plugins.register_plugin(_plugin_registering("typed", Typed), "typed")
    for option, value, allowed in [("credit", [1], "float"), ("credit", True, "float"), ("limit", 2.5, "int or None")]:
        with pytest.raises(IrlmError, match=rf"reward 'typed' \(plugin 'typed'\) option {option}=.* must be of type "
                                            rf"{allowed}, got"):
            make_reward("typed", corpus, **{option: value})
    # ints for floats, numpy scalars, None where allowed, and annotations it cannot check pass as given.
    reward = make_reward("typed", corpus, credit=1, limit=np.int64(3), tags=["a"])
    assert (reward.inner.credit, reward.inner.limit, reward.inner.tags) == (1, 3, ["a"])
    assert make_reward("typed", corpus, credit=np.float32(0.25), limit=None).inner.credit == 0.25


def test_make_reward_needs_a_corpus() -> None:
    with pytest.raises(IrlmError, match=r"make_reward needs the Corpus .* got str 'grammar'.*load_corpus"):
        make_reward("exact", "grammar")  # type: ignore[arg-type]


@pytest.mark.parametrize("options", ["value=1", [1]])
def test_reward_options_must_be_a_mapping(options: object) -> None:
    with pytest.raises(IrlmError, match="reward_options must be a mapping of option names to values"):
        gym.make("irlm/NextWord-v0", corpus="grammar", reward_options=options)


def test_corpus_factory_must_return_a_corpus_source() -> None:
    plugins.register_plugin(_plugin_registering("lines", lambda: ["a b"], hook="irlm_register_corpora"), "lines")
    with pytest.raises(IrlmError, match=r"corpus 'lines' \(plugin 'lines'\) returned list, not an irlm_env.corpora.CorpusSource"):
        make_corpus_source("lines", {})


def test_corpus_text_that_is_not_unicode_is_named_with_its_unit() -> None:
    """Undecodable bytes kept by errors='surrogateescape' cannot be hashed or tokenized as text."""
    units = ["a good line", "a bad \udcff line", "a third line"]
    plugins.register_plugin(
        _plugin_registering("bytes", lambda: CorpusSource(units=units), hook="irlm_register_corpora"), "bytes"
    )
    with pytest.raises(IrlmError, match=r"corpus 'bytes': unit 1 holds characters that are not text.*errors='replace'"):
        load_corpus("bytes")


# --- A plugin that breaks while registering is skipped; the others keep working (issue 10.4) --

BROKEN_REGISTRATIONS = {
    "reward-hook-raises": """
        from irlm_env import hookimpl

        @hookimpl
        def irlm_register_corpora(register):
            register("brokencorpus", lambda: None)

        @hookimpl
        def irlm_register_rewards(register):
            register("brokenreward", lambda corpus: None)
            raise RuntimeError("boom")
    """,
    "corpus-hook-raises": """
        from irlm_env import hookimpl

        @hookimpl
        def irlm_register_rewards(register):
            register("brokenreward", lambda corpus: None)

        @hookimpl
        def irlm_register_corpora(register):
            raise KeyError("nope")
    """,
    "invalid-reward-name": """
        from irlm_env import hookimpl

        @hookimpl
        def irlm_register_rewards(register):
            register("brokenreward", lambda corpus: None)
            register("Bad Name", lambda corpus: None)
    """,
    "invalid-corpus-name": """
        from irlm_env import hookimpl

        @hookimpl
        def irlm_register_corpora(register):
            register("", lambda: None)
    """,
    "bad-reward-signature": """
        from irlm_env import hookimpl

        @hookimpl
        def irlm_register_rewards(register):
            register("brokenreward", lambda: None)
    """,
    "bad-corpus-signature": """
        from irlm_env import hookimpl

        def factory(path, /):
            return None

        @hookimpl
        def irlm_register_corpora(register):
            register("brokencorpus", factory)
    """,
}
PROBLEMS = {
    "reward-hook-raises": "failed in its irlm_register_rewards hook: RuntimeError: boom",
    "corpus-hook-raises": "failed in its irlm_register_corpora hook: KeyError",
    "invalid-reward-name": "registers a reward named 'Bad Name'; a name must be",
    "invalid-corpus-name": "registers a corpus named ''; a name must be",
    "bad-reward-signature": "registers reward 'brokenreward' with a factory that takes no positional corpus",
    "bad-corpus-signature": "registers corpus 'brokencorpus' with a factory whose parameter.*positional-only",
}


@pytest.mark.parametrize("shape", sorted(BROKEN_REGISTRATIONS))
def test_a_plugin_that_breaks_while_registering_is_skipped(make_dist: MakeDist, shape: str) -> None:
    module = f"fake_{shape.replace('-', '_')}"
    make_dist("irlm-broken", {"broken": module}, {module: BROKEN_REGISTRATIONS[shape]}, version="0.2")
    make_dist("irlm-fine", {"fine": "fake_fine_too"}, {"fake_fine_too": REWARD_PLUGIN.format(name="fine")})
    with pytest.warns(PluginWarning, match=rf"'broken' \(distribution irlm-broken 0.2\) {PROBLEMS[shape]}.*skipped"):
        rewards, corpora = reward_registry(), corpus_registry()
    assert {"exact", "fine"} <= set(rewards.names()) and "brokenreward" not in rewards
    assert {"pydocs", "grammar", "text"} <= set(corpora.names()) and "brokencorpus" not in corpora
    assert _info("broken").error is not None and _info("fine").error is None
    assert "broken" not in {impl.plugin_name for impl in plugins.get_plugin_manager().hook.irlm_register_rewards.get_hookimpls()}
    env = gym.make(irlm_env.ENV_ID, corpus="grammar", corpus_options={"n_sentences": 300}, reward="fine")
    env.reset(seed=0)


@pytest.mark.parametrize("shape", ["reward-hook-raises", "invalid-corpus-name", "bad-reward-signature"])
def test_a_plugin_that_breaks_while_registering_is_fatal_when_strict(
    make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    module = f"fake_strict_{shape.replace('-', '_')}"
    make_dist("irlm-broken", {"broken": module}, {module: BROKEN_REGISTRATIONS[shape]})
    monkeypatch.setenv(plugins.STRICT_ENV, "1")
    with pytest.raises(IrlmError, match=rf"'broken' .*{PROBLEMS[shape]}.*IRLM_STRICT_PLUGINS=1 makes this fatal"):
        reward_registry()


def test_an_unknown_name_under_a_plugin_selection_points_at_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.LOAD_ENV, "")
    with pytest.raises(IrlmError, match=r"unknown reward 'similarity'.*IRLM_LOAD_PLUGINS='' loads only the installed "
                                        r"plugins it names: add the one that provides it, or unset IRLM_LOAD_PLUGINS"):
        reward_registry().get("similarity")
