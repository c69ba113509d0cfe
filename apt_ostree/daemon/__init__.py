"""apt-ostreed: the system D-Bus service that runs every change to the booted system as a transaction."""
