"""Which database errors are the message's fault (dead-letter it after its attempts) and
which are not (give the batch back and wait, never dead-letter)."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg import exceptions

from shared.db import is_transient

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "error",
    [
        exceptions.SerializationError("40001"),
        exceptions.DeadlockDetectedError("40P01"),
        exceptions.DiskFullError("53100"),
        exceptions.QueryCanceledError("57014"),
        exceptions.LockNotAvailableError("55P03"),
        exceptions.ReadOnlySQLTransactionError("25006"),
        exceptions.AdminShutdownError("57P01"),
        exceptions.CannotConnectNowError("57P03"),
        exceptions.ConnectionDoesNotExistError("08003"),
        exceptions.InsufficientPrivilegeError("42501"),
        exceptions.UndefinedTableError("42P01"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionRefusedError("database is down"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_is_never_the_message_s_fault(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        exceptions.UniqueViolationError("23505"),
        exceptions.CheckViolationError("23514"),
        exceptions.CharacterNotInRepertoireError("22021"),
        exceptions.DataError("22000"),
        ValueError("a handler bug"),
        KeyError("missing"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_the_message_may_have_caused(error: BaseException) -> None:
    assert not is_transient(error)
