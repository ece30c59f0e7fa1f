"""Where a sweep's study lives: a journal file on this machine, or a PostgreSQL database.

Optuna recommends its journal file for several processes on one machine (its FAQ advises
against SQLite for parallel work) and a database for many machines. A database URL may hold a
password: every message this module makes shows the URL with the password masked, and any
error text from the driver is scrubbed of it before it is raised.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitnet.errors import DigitnetError

__all__ = ["SweepError", "Storage", "JOURNAL_NAME", "open_storage", "masked_url", "open_study"]

JOURNAL_NAME = "study.journal"  # the default storage, inside the sweep's folder
CONNECT_TIMEOUT = 5  # seconds a database gets to answer before the sweep gives up
_DRIVERS = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg")
_USAGE = ("give postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave --storage out for a "
          "journal file under --out")


class SweepError(DigitnetError):
    """A sweep cannot start or go on: its storage, its study or its grid."""


@dataclass(frozen=True)
class Storage:
    """A storage the sweep can open in any process: the URL (or journal path) and its name."""

    url: str | None        # a database URL, or None for the journal file
    journal: Path | None   # the journal file, when url is None
    shown: str             # how messages name it (a database URL's password masked)

    def open(self) -> Any:
        """The Optuna storage object; raises SweepError when it cannot be reached."""
        import optuna

        if self.journal is not None:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            try:
                return JournalStorage(JournalFileBackend(str(self.journal)))
            except OSError as exc:
                raise SweepError(f"{self.journal}: cannot open the study journal "
                                 f"({exc.strerror or exc})") from None
        assert self.url is not None
        logging.getLogger("alembic").setLevel(logging.WARNING)  # schema set-up chatter
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return optuna.storages.RDBStorage(
                    self.url, engine_kwargs={
                        "connect_args": {"connect_timeout": CONNECT_TIMEOUT},
                        "pool_pre_ping": True})
        except Exception as exc:  # the driver's errors: connection refused, bad password...
            raise SweepError(f"--storage {self.shown}: cannot use the database "
                             f"({self.scrub(_first_line(exc))})") from None

    def scrub(self, text: str) -> str:
        """``text`` with the URL's password, if any, replaced by ***."""
        password = _password(self.url) if self.url else None
        return text.replace(password, "***") if password else text


def _first_line(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's error and appends the SQL and a link; the driver's own
    # first line says what went wrong.
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return lines[0] if lines else type(inner).__name__


def _password(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password  # type: ignore[return-value]
    except Exception:
        return None


def masked_url(url: str) -> str:
    """The URL with its password shown as ***; a URL that cannot be parsed, as <unparsable>."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<a URL that cannot be parsed>"


def open_storage(url: str | None, out: Path) -> Storage:
    """Check a ``--storage`` value (or its absence) and say where the study is kept.

    Raises
    ------
    SweepError
        For a malformed URL, a database Optuna's sweep does not support here, or an ``out``
        that is not a folder.
    """
    if url is None:
        if out.exists() and not out.is_dir():
            raise SweepError(f"--out {out}: is a file; give a folder for the sweep")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepError(f"--out {out}: cannot create the folder "
                             f"({exc.strerror or exc})") from None
        journal = out / JOURNAL_NAME
        return Storage(None, journal, str(journal))
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise SweepError(f"--storage {masked_url(url)}: not a database URL; {_USAGE}") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername not in _DRIVERS:
        raise SweepError(f"--storage {shown}: {parsed.drivername!r} databases are not "
                         f"supported; {_USAGE}")
    if not parsed.database:
        raise SweepError(f"--storage {shown}: names no database; {_USAGE}")
    if parsed.drivername == "postgresql":  # the driver the sweep extra installs (psycopg 3)
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return Storage(url, None, shown)


def open_study(storage: Storage, name: str, spec: dict[str, Any], sampler: Any = None,
               pruner: Any = None) -> Any:
    """Create the study ``name``, or join it when it exists and was made for the same ``spec``.

    The spec (what the sweep trains: its grid or search, and the fixed training options) is kept
    in the study's user attributes; a study made for another spec is left as it is.
    """
    import optuna

    handle = storage.open()
    try:
        study = optuna.create_study(study_name=name, storage=handle, sampler=sampler,
                                    pruner=pruner, direction="maximize", load_if_exists=True)
        stored = study.user_attrs.get("digitnet")
        if stored is None:
            study.set_user_attr("digitnet", spec)
        elif stored != spec:
            raise SweepError(f"study {name!r} in {storage.shown} was made for "
                             f"{describe(stored)}, not {describe(spec)}; give another "
                             "--study, or the options it was made with")
    except SweepError:
        raise
    except Exception as exc:
        raise SweepError(f"{storage.shown}: cannot open study {name!r} "
                         f"({storage.scrub(_first_line(exc))})") from None
    return study


def describe(spec: dict[str, Any]) -> str:
    """A spec in a few words, for messages: 'hidden 1,2 x layers 1 x 3 seeds, epochs=1'."""
    if not isinstance(spec, dict):
        return repr(spec)
    if spec.get("kind") == "grid":
        words = (f"hidden {','.join(map(str, spec.get('hidden', [])))} x layers "
                 f"{','.join(map(str, spec.get('layers', [])))} x {spec.get('seeds')} seeds")
    else:
        words = (f"a search for hidden {spec.get('hidden')} x layers {spec.get('layers')} "
                 f"over {', '.join(spec.get('searched', []))}")
    fixed = spec.get("fixed") or {}
    options = ", ".join(f"{k}={v}" for k, v in sorted(fixed.items()))
    return f"{words} (preset {spec.get('preset')}{', ' + options if options else ''})"
