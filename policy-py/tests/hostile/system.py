# `import os` is refused by the allowlist; dig os.system out of the object
# graph instead, so the audit hook (the second line of defence) must stop it.
def _find_system():
    for cls in ().__class__.__base__.__subclasses__():
        init = getattr(cls, "__init__", None)
        g = getattr(init, "__globals__", None)
        if isinstance(g, dict) and "system" in g and callable(g["system"]):
            return g["system"]
    raise RuntimeError("no os.system found")


def act(obs):
    _find_system()("touch /tmp/dualplane-pwned")
