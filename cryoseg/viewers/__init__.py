"""cryoseg viewers. Every viewer class is re-exported here: Scipion discovers them in this module."""
