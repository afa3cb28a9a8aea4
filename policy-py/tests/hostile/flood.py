# Forge protocol replies on every descriptor it can find, then stop reading:
# the supervisor must treat it as a violation, not hang or believe it.
def act(obs):
    os = type(obs).plan.__globals__["builtins"].__import__("os")
    bogus = (0).to_bytes(4, "little") + (1).to_bytes(8, "little")
    for fd in range(3, 12):
        try:
            for _ in range(1000):
                os.write(fd, bogus)
        except OSError:
            pass
    while True:
        pass
