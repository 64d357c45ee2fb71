"""Plugins layer: the manager (:mod:`.manager`), the component registry built from it
(:mod:`.registry`), the registry-backed toolbox components use (:mod:`.toolbox`), and the
contract's own built-in plugin (:mod:`.builtins`)."""
