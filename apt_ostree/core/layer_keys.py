"""The commit metadata keys of a layered commit (apt-ostree's client layer), apart from the
layering engine so that reading them (status) does not load APT."""

KEY_CLIENTLAYER = "apt-ostree.clientlayer"
KEY_BASE = "apt-ostree.base"
KEY_FINGERPRINT = "apt-ostree.layer.fingerprint"
KEY_LAYERED = "apt-ostree.layer.packages"
KEY_REMOVED = "apt-ostree.layer.removed"
KEY_REPLACED = "apt-ostree.layer.replaced"
KEY_REQUESTED = "apt-ostree.layer.requested"
KEY_INACTIVE = "apt-ostree.layer.inactive"
