"""One exception type per kind of user mistake; each message names the key/file and the fix."""


class MrrtfError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class ConfigError(MrrtfError):
    """A configuration key has an invalid value, type, or combination with another key."""


class DataError(MrrtfError):
    """Input data (a corpus, a dataset file, an index) is missing, malformed or inconsistent."""


class CheckpointError(MrrtfError):
    """A checkpoint is missing, incomplete, or does not match the model/config it is loaded into."""


class TokenizerError(MrrtfError):
    """A tokenizer file is missing or lacks the special tokens the objectives need."""


class ExportError(MrrtfError):
    """A model cannot be represented in the requested Hugging Face format."""


class SandboxError(MrrtfError):
    """The sandbox itself cannot run (cannot start its processes); never a verdict on a program."""


class LaunchError(MrrtfError):
    """A multi-process job (torchrun) could not start or ended without its result."""
