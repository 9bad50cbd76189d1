"""What survives a restart: ``override.dump``, ``offline.dump``, ``stats.dump``, ``notify.dump``.

``dumps`` holds the pure line formats (the original's, with IPv6 in brackets); ``component``
restores them at start and saves them when the original did, always atomically (``atomic``).
"""
