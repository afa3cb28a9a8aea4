# The allowlist refuses `import os`, but the real builtins are reachable
# through any function's globals; the audit hook must refuse the write.
def act(obs):
    os = type(obs).plan.__globals__["builtins"].__import__("os")
    fd = os.open("/tmp/dualplane-pwned", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b"pwned")
