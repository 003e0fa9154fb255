"""Reading and writing sysfs, rooted at a directory so tests and commands can point anywhere.

The reader never holds a module-level path: it is built with a root (``/`` on a real host, an
unpacked capture or a fake tree in tests) and every path it takes is relative to that root or
already under it. Sysfs is racy by nature (devices vanish while we read them), so every
read distinguishes three outcomes: the value, ``None`` when the file is not there, and a
:class:`~pcifleet.domain.errors.SysfsError` naming the path, the field and the rule when the
file exists but cannot be read or does not parse. Callers decide which of those is a warning.

Reads use ``os.open``/``os.read`` on strings rather than :mod:`pathlib` text I/O: a host with
hundreds of VFs means thousands of tiny files per scan and the per-call overhead dominates.

Writing is separate (:class:`SysfsWriter`): discovery only reads, and the one writer in
production (:class:`RealSysfsWriter`) guards against drivers that block a write forever.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Final, NamedTuple, Protocol

from pcifleet.domain.errors import SriovConfigError, SysfsError

_MISSING: Final = (FileNotFoundError, NotADirectoryError)
_CHUNK: Final = 65536
_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC

StrPath = str | os.PathLike[str]


class DirIdentity(NamedTuple):
    """What identifies one incarnation of a sysfs directory (a re-created device differs)."""

    inode: int
    device: int
    ctime_ns: int


class SysfsReader:
    """Read sysfs files under ``root``; paths are relative to the root or already under it."""

    __slots__ = ("_prefix", "root")

    def __init__(self, root: StrPath = "/") -> None:
        self.root = Path(root)
        self._prefix = os.fspath(self.root).rstrip("/")

    def __repr__(self) -> str:
        return f"SysfsReader({os.fspath(self.root)!r})"

    @classmethod
    def for_directory(cls, directory: StrPath) -> SysfsReader:
        """A reader for ``directory``, given either as a root (holding ``sys/``) or as the
        ``sys`` directory itself (the captures' README says "point a program at .../sys")."""
        path = Path(directory)
        if path.name == "sys" and (path / "bus").is_dir() and not (path / "sys").is_dir():
            return cls(path.parent)
        return cls(path)

    def path(self, *parts: str) -> str:
        """An absolute path under the root, e.g. ``path("sys", "bus", "pci", "devices")``."""
        return "/".join((self._prefix, *parts))

    def relative(self, path: StrPath) -> str:
        """``path`` as the kernel would name it (``/sys/...``), for warnings and messages."""
        text = os.fspath(path)
        if self._prefix and text.startswith(self._prefix + "/"):
            return text[len(self._prefix) :]
        return text

    # ------------------------------------------------------------------ files

    def read_text(self, path: StrPath) -> str | None:
        """The stripped content; None when missing or empty; SysfsError when unreadable."""
        raw = self._read_bytes(os.fspath(path))
        if raw is None:
            return None
        try:
            text = raw.decode().strip()
        except UnicodeDecodeError:
            raise self._error(path, "is not UTF-8 text", "encoding") from None
        return text or None

    def try_text(self, path: StrPath) -> str | None:
        """Like :meth:`read_text`, but None for any failure: for attributes that a driver
        may refuse to report (``phys_port_name`` reads fail with EOPNOTSUPP on many NICs).

        This is the hot path of a rescan (netdev state of every VF), hence written out."""
        try:
            fd = os.open(path, _FLAGS)
        except OSError:
            return None
        try:
            data = os.read(fd, _CHUNK)
            if len(data) == _CHUNK:
                data += _read_rest(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            return data.decode().strip() or None
        except UnicodeDecodeError:
            return None

    def try_texts(self, directory: str, names: tuple[str, ...]) -> list[str | None]:
        """:meth:`try_text` of several attributes of one directory, in one call (the netdev
        state of every VF on every rescan: the per-call overhead is worth saving)."""
        values: list[str | None] = []
        append = values.append
        for name in names:
            try:
                fd = os.open(f"{directory}/{name}", _FLAGS)
            except OSError:
                append(None)
                continue
            try:
                data = os.read(fd, _CHUNK)
            except OSError:
                data = b""
            finally:
                os.close(fd)
            try:
                append(data.decode().strip() or None)
            except UnicodeDecodeError:
                append(None)
        return values

    def read_int(self, path: StrPath) -> int | None:
        """A decimal integer (negative allowed); None when missing; SysfsError when malformed."""
        text = self.read_text(path)
        if text is None:
            return None
        try:
            return int(text, 10)
        except ValueError:
            raise self._error(path, f"{text!r} is not a decimal integer", "int") from None

    def read_hex(self, path: StrPath) -> int | None:
        """A hex integer, with or without ``0x`` (``sriov_vf_device`` has none)."""
        text = self.read_text(path)
        if text is None:
            return None
        try:
            return int(text, 16)
        except ValueError:
            raise self._error(path, f"{text!r} is not a hex number", "hex") from None

    # ------------------------------------------------------------------ directories and links

    def list_dir(self, path: StrPath) -> list[str] | None:
        """Entry names, sorted; None when the directory is missing."""
        try:
            return sorted(os.listdir(path))
        except _MISSING:
            return None
        except OSError as exc:
            raise self._error(path, f"cannot be listed ({exc.strerror})", "unreadable") from None

    def exists(self, path: StrPath) -> bool:
        return os.path.lexists(os.fspath(path))

    def link_name(self, path: StrPath) -> str | None:
        """The last component of a symlink's target (``driver`` -> ``vfio-pci``); None if
        not a link. The target need not exist: captures keep links whose target was cut."""
        try:
            target = os.readlink(path)
        except OSError:
            return None
        return target.rstrip("/").rsplit("/", 1)[-1]

    def link_target(self, path: StrPath) -> str | None:
        """A symlink's target made absolute against the link's directory, without following
        further links (``../0000:41:00.0`` -> ``<dir of link>/../0000:41:00.0`` normalized)."""
        target = self._readlink(path)
        if target is None:
            return None
        base = os.path.dirname(os.fspath(path))
        return os.path.normpath(os.path.join(base, target))

    def resolve(self, path: StrPath) -> str:
        """Every link followed (the device's directory under ``sys/devices``)."""
        return os.path.realpath(os.fspath(path))

    def identity(self, path: StrPath) -> DirIdentity | None:
        """The identity of the directory ``path`` points to; None when it is gone."""
        try:
            st = os.stat(os.fspath(path))
        except OSError:
            return None
        return DirIdentity(st.st_ino, st.st_dev, st.st_ctime_ns)

    # ------------------------------------------------------------------ internals

    def _readlink(self, path: StrPath) -> str | None:
        try:
            return os.readlink(os.fspath(path))
        except OSError:
            # EINVAL (not a link) and ENOENT both mean "no such link" to a caller.
            return None

    def _read_bytes(self, path: str) -> bytes | None:
        try:
            fd = os.open(path, _FLAGS)
        except _MISSING:
            return None
        except OSError as exc:
            raise self._error(path, f"cannot be opened ({exc.strerror})", "unreadable") from None
        try:
            data = os.read(fd, _CHUNK)
            return data + _read_rest(fd) if len(data) == _CHUNK else data
        except OSError as exc:
            raise self._error(path, f"cannot be read ({exc.strerror})", "unreadable") from None
        finally:
            os.close(fd)

    def _error(self, path: StrPath, detail: str, rule: str) -> SysfsError:
        name = self.relative(path)
        return SysfsError(f"{name}: {detail}", path=name, field=os.path.basename(name), rule=rule)


def _read_rest(fd: int) -> bytes:
    """What follows a full first chunk (sysfs attributes fit in one page; other files may not)."""
    chunks = []
    while chunk := os.read(fd, _CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------- writing


class SysfsWriter(Protocol):
    """Where sysfs writes go: the kernel in production, a fake kernel in tests."""

    def write(self, path: Path, value: str) -> None: ...


def write_with_timeout(writer: SysfsWriter, path: Path, value: str, timeout: float) -> None:
    """``writer.write`` in a daemon thread, abandoned after ``timeout`` seconds.

    A write blocked in the kernel cannot be cancelled; the thread is left to finish or hang
    and the caller gets an error in bounded time. Errors of the write (``OSError`` from the
    kernel or a fake of it) come back as :class:`SriovConfigError` naming the attribute.
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            writer.write(path, value)
            outcome.append(None)
        except (OSError, UnicodeError, SriovConfigError) as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, name="sysfs-write", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise SriovConfigError(
            f"writing {value!r} to {path} did not finish within {timeout:g} s",
            path=str(path),
            field=path.name,
            rule="write_timeout",
        )
    error = outcome[0]
    if isinstance(error, SriovConfigError):
        raise error
    if error is not None:
        raise SriovConfigError(
            f"writing {value!r} to {path} failed: {error}",
            path=str(path),
            field=path.name,
            rule="write_failed",
        )


class _FileWriter:
    """A plain ``open(path, "w").write(value)``: one ``write(2)``, as sysfs wants."""

    def write(self, path: Path, value: str) -> None:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value)


class RealSysfsWriter:
    """Writes a sysfs attribute of the running kernel, giving up after ``timeout`` seconds.

    Some drivers (i40e: "other operation is pending") block a ``sriov_numvfs`` write in the
    kernel indefinitely, so the write runs in a worker thread (:func:`write_with_timeout`).
    """

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout

    def write(self, path: Path, value: str) -> None:
        write_with_timeout(_FileWriter(), path, value, self.timeout)
