"""Building OSTree commits (and, later, disk images) from treefiles."""
