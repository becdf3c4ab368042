"""cryoseg wizards (form helpers shown as a wand next to a parameter)."""
