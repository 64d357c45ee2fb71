from __future__ import annotations

import pytest

from harness.errors import (
    ConfigError,
    DuplicateComponentError,
    PluginError,
    UnknownComponentError,
)
from harness.plugins.manager import HarnessPluginWarning, make_plugin_manager, plugin_infos
from harness.plugins.registry import Registry, load_registry
from tests.harness.conftest import install_plugin, trust


def test_builtins_register_through_hooks():
    pm = make_plugin_manager(load_entrypoints=False)
    reg = Registry.from_manager(pm)
    assert "digits_cnn" in reg.names("victim")
    assert "none" in reg.names("defense")
    assert "knockoff" in reg.names("attack")
    assert reg.get("attack", "knockoff").distribution == "exitsteal-harness"
    assert {"max_prob", "entropy"} <= set(reg.names("exit_policy"))


def test_third_party_plugin_discovered_via_entry_point(tiny_plugin):
    pm = make_plugin_manager()
    reg = Registry.from_manager(pm)
    entry = reg.get("attack", "tiny_attack")
    assert entry.plugin == "tiny"
    assert entry.distribution == "tiny-harness-plugin"
    assert entry.version == "0.1.0"
    infos = {i.name: i for i in plugin_infos(pm)}
    assert "harness_register_attacks" in infos["tiny"].hooks


def test_disable_and_allow_lists(tiny_plugin, monkeypatch):
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "tiny")
    assert "tiny_attack" not in load_registry().names("attack")
    monkeypatch.delenv("HARNESS_DISABLE_PLUGINS")
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "other")
    assert "tiny_attack" not in load_registry().names("attack")
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "tiny")
    assert "tiny_attack" in load_registry().names("attack")


def test_broken_plugin_skipped_with_warning_or_strict_error(plugin_dir, monkeypatch):
    trust(monkeypatch, 'broken')  # imported here: the loading rules themselves
    install_plugin(plugin_dir, "broken-plugin", "broken_plugin_mod",
                   "raise ImportError('missing dependency xyz')\n", "broken")
    with pytest.warns(HarnessPluginWarning, match=r"'broken'.*broken-plugin.*xyz"):
        pm = make_plugin_manager()
    assert pm.get_plugin("broken") is None
    with pytest.raises(PluginError, match="broken-plugin"):
        make_plugin_manager(strict=True)


def test_duplicate_component_name_names_both_plugins(plugin_dir, monkeypatch):
    trust(monkeypatch, 'dup')  # imported here: the loading rules themselves
    src = ("import harness\nfrom defenses.none import NoDefense\n"
           "class Again(NoDefense):\n    name = 'none'\n"
           "@harness.hookimpl\ndef harness_register_defenses(register):\n    register(Again)\n")
    install_plugin(plugin_dir, "dup-plugin", "dup_plugin_mod", src, "dup")
    with pytest.raises(DuplicateComponentError, match=r"'none' is registered twice") as err:
        load_registry()
    assert "'dup' (dup-plugin)" in str(err.value)
    assert "'defenses.plugin' (exitsteal-harness)" in str(err.value)


def test_invalid_registration_skips_the_plugin_with_a_warning(plugin_dir, monkeypatch):
    trust(monkeypatch, 'badreg')  # imported here: the loading rules themselves
    src = ("import harness\nfrom defenses.none import NoDefense\n"
           "class Fine(NoDefense):\n    name = 'fine'\n"
           "class NotADefense:\n    name = 'x'\n"
           "@harness.hookimpl\ndef harness_register_defenses(register):\n"
           "    register(Fine)\n    register(NotADefense)\n")
    install_plugin(plugin_dir, "bad-reg", "bad_reg_mod", src, "badreg")
    with pytest.warns(HarnessPluginWarning, match=r"'badreg'.*not a subclass.*skipped"):
        reg = load_registry()
    assert "fine" not in reg.names("defense")  # the whole plugin is skipped
    with pytest.raises(PluginError, match=r"'badreg'.*not a subclass"):
        load_registry(strict=True)


def test_registration_hook_that_raises_is_skipped(plugin_dir, monkeypatch):
    trust(monkeypatch, 'raising')  # imported here: the loading rules themselves
    src = ("import harness\nfrom defenses.none import NoDefense\n"
           "class Early(NoDefense):\n    name = 'early'\n"
           "@harness.hookimpl\ndef harness_register_defenses(register):\n    register(Early)\n"
           "@harness.hookimpl\ndef harness_register_attacks(register):\n"
           "    raise RuntimeError('registry server unreachable')\n")
    install_plugin(plugin_dir, "raising-plugin", "raising_mod", src, "raising")
    with pytest.warns(HarnessPluginWarning, match=r"'raising'.*raising-plugin.*"
                                                  r"harness_register_attacks raised RuntimeError"):
        reg = load_registry()
    assert "early" not in reg.names("defense") and "knockoff" in reg.names("attack")
    with pytest.raises(PluginError, match="registry server unreachable"):
        load_registry(strict=True)


def test_entry_point_naming_a_builtin_module_is_skipped(plugin_dir, monkeypatch):
    trust(monkeypatch, 'evil')  # imported here: the loading rules themselves
    info = plugin_dir / "evil_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[harness]\nevil = attacks.plugin\n")
    with pytest.warns(HarnessPluginWarning, match=r"'evil'.*evil-dist.*built-in module"):
        pm = make_plugin_manager()
    reg = Registry.from_manager(pm)
    assert reg.get("attack", "knockoff").plugin == "attacks.plugin"


def test_plugin_with_an_unknown_hook_is_skipped(plugin_dir, monkeypatch):
    trust(monkeypatch, 'typo')  # imported here: the loading rules themselves
    src = ("import harness\n@harness.hookimpl\ndef harness_register_defences(register):\n"
           "    pass\n")
    install_plugin(plugin_dir, "typo-plugin", "typo_mod", src, "typo")
    with pytest.warns(HarnessPluginWarning, match=r"unknown hooks \['harness_register_defences'\]"):
        pm = make_plugin_manager()
    assert pm.get_plugin("typo") is None


def test_unknown_component_lists_available():
    reg = load_registry(load_entrypoints=False)
    with pytest.raises(UnknownComponentError, match=r"unknown attack 'nope'; available: .*knockoff"):
        reg.get("attack", "nope")


def test_managers_are_independent():
    import harness
    from defenses.none import NoDefense

    class Extra:
        @harness.hookimpl
        def harness_register_defenses(self, register):
            register(type("OnlyHere", (NoDefense,), {"name": "only_here"}))

    a = make_plugin_manager(load_entrypoints=False, extra_plugins=(Extra(),))
    b = make_plugin_manager(load_entrypoints=False)
    assert "only_here" in Registry.from_manager(a).names("defense")
    assert "only_here" not in Registry.from_manager(b).names("defense")
    a.set_blocked("victims.plugin")
    assert not b.is_blocked("victims.plugin")
    assert Registry.from_manager(b).names("backend") == ["onnx", "torch"]


HOSTED = '''
import harness
from harness.params import Interval
from harness.protocol import Attack
from harness.stages import Defense

IMPORTED_BY = __import__("os").getpid()


class Delay(Defense):
    """A defense of an untrusted plugin that holds answers back."""

    name = "hosted_delay"

    def shape_latency(self, batch):
        return batch.latency_s * 2


class Hosted(Attack):
    """An attack of an untrusted plugin."""

    name = "hosted_attack"
    _parameter_constraints = {"depth": [Interval("int", 1, 9)]}

    def __init__(self, depth=3, tag="t"):
        self.depth = depth
        self.tag = tag

    @classmethod
    def label_for(cls, params):
        return f"hosted[{params['tag']}]"


@harness.hookimpl
def harness_register_attacks(register):
    register(Hosted)


@harness.hookimpl
def harness_register_defenses(register):
    register(Delay)
'''


@pytest.mark.integration
def test_an_untrusted_plugin_is_described_by_the_plugin_host_never_imported(plugin_dir):
    import sys

    from harness.components import build_component
    from harness.isolation.plugin_host import evaluator_registry

    install_plugin(plugin_dir, "hosted-dist", "hosted_mod", HOSTED, "hosted")
    pm = make_plugin_manager()
    assert pm.hosted == ["hosted"] and pm.get_plugin("hosted") is None
    registry = evaluator_registry(pm)
    entry = registry.get("attack", "hosted_attack")
    assert not entry.trusted and entry.distribution == "hosted-dist"
    assert "hosted_mod" not in sys.modules  # the evaluator never ran the plugin's code
    obj = build_component(entry.cls, {"tag": "x"})
    assert obj.get_params() == {"depth": 3, "tag": "x"}
    assert entry.cls.label_for(obj.get_params()) == "hosted[x]"
    with pytest.raises(ConfigError, match=r"depth=12 is invalid"):
        build_component(entry.cls, {"depth": 12}).validate(registry)
    with pytest.raises(ConfigError, match="no parameter"):
        build_component(entry.cls, {"width": 1})
    assert len(entry.source_digest()) == 64
    infos = {i.name: i.trust for i in plugin_infos(pm)}
    assert infos["hosted"] == "sandboxed" and infos["attacks.plugin"] == "built-in"
    # declared stages, as the host describes them (a board draws latency panels from them)
    assert registry.get("defense", "hosted_delay").stages() == ["shape_latency"]
    assert registry.get("defense", "jitter").stages() == ["shape_latency"]
    assert registry.get("defense", "none").stages() == []
    assert entry.stages() == []  # not a defense


def test_a_hosted_defense_s_stage_list_is_read_as_known_names_once_each():
    from harness.plugins.hosted import HostedDescription, stand_in
    from harness.plugins.registry import Registered

    def stages(traits):
        description = HostedDescription("defense", "odd", "p", "d", "1", "", (), {}, False,
                                        "0" * 64, (), traits)
        return Registered("defense", "odd", stand_in(description, None), "p", "d", "1").stages()

    hostile = ["shape_latency", "teleport", ["admit"], "shape_latency", "admit", 7]
    assert stages({"stages": hostile}) == ["admit", "shape_latency"]
    assert stages({"stages": "shape_latency"}) == [] and stages({}) == []
