"""Every dashboard test keeps a list of the pop-ups the app showed: a pop-up expires after a few
seconds, and a test on a loaded machine may look for it after that."""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App


@pytest.fixture(autouse=True)
def toasts_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = App.notify

    def notify(self: App[Any], message: str, **options: Any) -> None:
        # the text as drawn: the dashboard's own notify has cleaned it by now
        self.__dict__.setdefault("toasts_shown", []).append(message)
        shown(self, message, **options)

    monkeypatch.setattr(App, "notify", notify)
