"""The engine: no argparse, no D-Bus. Every operation takes a Progress."""
