"""Exceptions raised by vol3d.

Every error a user can cause (bad file, bad key, bad shape) is a :class:`Vol3dError` whose message
is one line naming the file, key or field at fault. The CLI prints it and exits with code 1; a
:class:`UsageError` (a wrong combination of arguments) exits with code 2.
"""


class Vol3dError(Exception):
    """Base class of all errors vol3d raises on bad input."""


class UsageError(Vol3dError):
    """Arguments that do not fit together (CLI exit code 2)."""


class MeshError(Vol3dError):
    """A mesh that cannot be voxelized: unreadable, empty, point cloud only, or degenerate.

    Attributes:
        source: the path (or built-in name) of the mesh.
        reason: a short human-readable reason, without the path.
    """

    def __init__(self, source, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class FormatError(Vol3dError):
    """A file that is not a valid vol3d dataset or checkpoint (names the missing key/attribute)."""
