# Read a file outside Python's own (a dev token key, say).
def act(obs):
    real_open = type(obs).plan.__globals__["builtins"].open
    real_open("/etc/hostname").read()
