"""The hand-off to ipvssync: ``ipvsfull.cfg``, ``ipvsfull.reload``, ``ipvsfull.lock`` and the
``diffs/diff_sync.<epoch>`` chain.

``formats`` holds the pure line formats (writer and reader side); ``writer`` does the file work
(flock, atomic snapshots, fsynced diff lines); ``component`` plugs the writer into the daemon.
"""
