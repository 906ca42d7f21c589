"""The project's errors: a stage that cannot do its job, a config that does not validate; the CLI turns
them into exit status 1 and 2."""


class StageError(RuntimeError):
    """A stage could not run, or its result is not acceptable; the message says why and the fix."""


class MissingInputError(StageError, FileNotFoundError):
    """A stage's input (an earlier stage's output) is not in the run directory."""


class ConfigError(ValueError):
    """A config file, override or value that does not match the schema (:mod:`dualvad.validation`)."""


class SettingError(ConfigError):
    """One config value that breaks its rule: ``key`` is its dotted path (``sample.budget``, or the field's
    name alone when the section was built directly), ``detail`` the rule and the value."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"config key {key!r} {detail}")
        self.key, self.detail = key, detail
