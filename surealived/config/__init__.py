"""The configuration: what the daemons are told to do, read and checked before anything runs.

* ``main``: ``surealived.cfg``, the daemons' settings, one frozen ``MainConfig``.
* ``model``: the test definition as immutable dataclasses (virtuals, testers, reals) and the core
  XML attributes, declared as ``Attr`` tables like a tester's own.
* ``attrs``: one attribute's text into its typed value, or an error saying what is valid.
* ``xml``: the XML test definition into the model, every error collected at once.
* ``check``: ``surealived -t``, the three together (settings, testers, XML) and the warnings.

No sockets, no event loop, no daemon state: reading the files (with ``path``/``exec``
attributes looking at the file system) and, for ``check``, loading the testers is all it does.
"""
