"""Errors that describe a user's input, as opposed to a defect in cryoseg.

Protocols show their message in the form or the step failure; the CLI prints it without a traceback.
"""


class CryoSegInputError(ValueError):
    """Bad input: the message says what is wrong and what to do about it."""
