"""The agent's small error hierarchy; each is turned into one clear message at the edge."""


class AgentError(Exception):
    """Base of every error the agent reports to a user instead of a traceback."""


class ConfigError(AgentError):
    """A configuration file or setting is malformed."""


class ModelError(AgentError):
    """The model file is missing, corrupt, or built for other protos."""


class DecodeError(AgentError):
    """Model output (or typed input) could not be turned into calls."""


class PolicyRefusal(AgentError):
    """The safety policy refused a call; nothing was dispatched."""


class InvalidCall(PolicyRefusal):
    """A call the car cannot do: unknown function, argument or value, or out of range."""


class VehicleUnavailable(AgentError):
    """A vehicle service is down or did not answer within the deadline."""


class VehicleRejected(AgentError):
    """A vehicle service received the call and refused it."""


class AudioError(AgentError):
    """Audio input that cannot be used: not a PCM WAV, truncated, empty, or the wrong sample rate."""


class RecognizerError(AgentError):
    """The speech recognizer or its model is missing or cannot be loaded."""
