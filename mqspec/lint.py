"""Warnings about topology that works but probably not as meant (see routing-based checks)."""

from __future__ import annotations

from mqspec import model
from mqspec.problems import Problem
from mqspec.semantics import problem


def check(scenario: model.Scenario) -> list[Problem]:
    return list(_literal_passwords(scenario))


def _literal_passwords(scenario: model.Scenario) -> list[Problem]:
    return [problem(scenario, where, "password is written literally in the file",
                    "use ${ENV_VAR} interpolation, e.g. password: ${APP_PASSWORD}", "warning")
            for where in scenario.literal_passwords]
