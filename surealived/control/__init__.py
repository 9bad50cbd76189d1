"""The control port (``nc localhost 1337``): ``protocol.py`` is the pure command language,
``server.py`` the asyncio adapter, ``process.py`` reads the process figures behind ``stats``."""
