def act(obs):
    hog = bytearray(10 * 1024**3)  # 10 GB
    return None
