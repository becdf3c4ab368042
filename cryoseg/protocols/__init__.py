"""cryoseg protocols. Every protocol class is re-exported here: Scipion discovers them in this module."""
